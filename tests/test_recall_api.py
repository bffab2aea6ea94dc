"""Recall over REST (`POST /api/v1/recall`, the Flask app with a real Redis; a URL fetched from
a local HTTP server) and on the command line (`imagine recall FILE`)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from PIL import Image

from bots.cli import cli
from bots.web.app import create_app
from generator.png import encode_png, parameters_text
from generator.request import ImageRequest
from settings import Settings
from tests.web_support import with_settings

REQUEST = ImageRequest(prompt="a lighthouse at dusk", negative_prompt="fog", width=64,
                       height=64, seed=5, num_inference_steps=80)
SOURCE = "0123456789abcdef" * 2


def png(request: ImageRequest | None, model_label: str = "tiny") -> bytes:
    pixels = Image.new("RGB", (8, 8), (20, 40, 200))
    if request is None:
        out = io.BytesIO()
        pixels.save(out, "PNG")
        return out.getvalue()
    return encode_png(pixels, parameters_text(request, request.seed or 0, model_label))


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


def test_recall_answers_the_prompt_the_parameters_and_the_notes(client: FlaskClient,
                                                                settings: Settings) -> None:
    answer = client.post("/api/v1/recall", json={"image": data_url(png(REQUEST))})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["prompt"] == (f"a lighthouse at dusk --seed 5 --steps {settings.max_steps} "
                              "--no fog")
    assert body["parameters"]["Steps"] == "80" and body["parameters"]["Model"] == "tiny"
    assert body["notes"] == [f"Steps 80 is over this server's limit: {settings.max_steps} "
                             "used (IMAGINE_MAX_STEPS)."]
    zoomed = REQUEST.zoomed_out(SOURCE, 5, 96, 96, 1.5)
    body = client.post("/api/v1/recall", json={"image": data_url(png(zoomed))}).get_json()
    assert body["prompt"].endswith(f"\nOperation: Zoom Out 1.5× of image {SOURCE} → 96x96")
    assert body["parameters"]["Source image"] == SOURCE


def test_nothing_to_recall_is_422_and_a_bad_body_or_image_400(client: FlaskClient) -> None:
    answer = client.post("/api/v1/recall", json={"image": data_url(png(None))})
    assert answer.status_code == 422
    assert answer.get_json()["error"].startswith("This PNG carries no generation parameters")
    for body in ({}, {"image": 5}, {"image": data_url(png(REQUEST)), "prompt": "x"},
                 {"image": "ftp://example.com/a.png"},
                 {"image": data_url(b"just text, no picture", "image/png")}):
        answer = client.post("/api/v1/recall", json=body)
        assert answer.status_code == 400, (body, answer.get_json())
        assert "\n" not in answer.get_json()["error"]
    assert client.post("/api/v1/recall", data="not json").status_code == 400


def test_recall_needs_the_api_token_when_one_is_set(settings: Settings) -> None:
    client = create_app(with_settings(settings, api_token="s3cret")).test_client()
    body = {"image": data_url(png(REQUEST))}
    assert client.post("/api/v1/recall", json=body).status_code == 401
    answer = client.post("/api/v1/recall", json=body,
                         headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200


@pytest.fixture
def image_server() -> Iterator[str]:
    """A local HTTP server answering every GET with our PNG."""
    data = png(REQUEST)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/fox.png"
    server.shutdown()
    server.server_close()


def test_an_image_url_is_fetched_only_where_outbound_requests_may_go(
        settings: Settings, image_server: str) -> None:
    refused = create_app(settings).test_client().post("/api/v1/recall",
                                                      json={"image": image_server})
    assert refused.status_code == 400  # a loopback address, not allowed by default
    allowed = create_app(with_settings(settings, outbound_allow=("127.0.0.1",))).test_client()
    answer = allowed.post("/api/v1/recall", json={"image": image_server})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["parameters"]["Seed"] == "5"


def test_the_openapi_document_describes_recall(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    route = document["paths"]["/api/v1/recall"]["post"]
    assert {"200", "400", "401", "413", "422"} <= set(route["responses"])


# --- imagine recall ------------------------------------------------------------------------


def test_imagine_recall_prints_the_prompt_notes_apart_or_json(tmp_path: Path) -> None:
    env = {"IMAGINE_MODEL": "/models/tiny", "IMAGINE_MAX_STEPS": "50",
           "IMAGINE_DEFAULT_STEPS": "25", "IMAGINE_DEFAULT_SIZE": "64",
           "IMAGINE_DATA_DIR": str(tmp_path / "data")}
    picture = tmp_path / "lighthouse.png"
    picture.write_bytes(png(REQUEST))
    result = CliRunner().invoke(cli, ["recall", str(picture)], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "a lighthouse at dusk --seed 5 --steps 50 --no fog\n"
    assert result.stderr == ("note: Steps 80 is over this server's limit: 50 used "
                             "(IMAGINE_MAX_STEPS).\n")
    result = CliRunner().invoke(cli, ["recall", "--json", str(picture)], env=env)
    assert json.loads(result.stdout)["parameters"]["Negative prompt"] == "fog"

    plain = tmp_path / "plain.png"
    plain.write_bytes(png(None))
    result = CliRunner().invoke(cli, ["recall", str(plain)], env=env)
    assert result.exit_code == 1
    assert "plain.png: This PNG carries no generation parameters" in result.stderr
