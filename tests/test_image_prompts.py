"""Image prompts: an image attached, in a data URL or a URL first, read under the outbound
rules, and the --strength/--iw flags of the grammar."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from bots.cli import cli
from bots.errors import PromptError
from bots.grammar import format_request, parse, request_from_fields
from bots.image_prompts import Prepared, image_prompt, read_image_reference, split_image_urls
from bots.limits import Limits
from generator.request import IMAGE_PROMPT_STRENGTH
from settings import Settings
from settings.errors import ImagineError
from tasks.core.storage import Storage

LIMITS = Limits(default_size=64)


def png(width: int = 40, height: int = 24, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/cat.png")
            self.end_headers()
            return
        found = {"/cat.png": (png(), "image/png"), "/big.png": (b"\0" * 4096, "image/png"),
                 "/page": (b"<html>a cat</html>", "text/html")}
        body, kind = found.get(self.path, (b"gone", "text/plain"))
        self.send_response(200 if self.path in found else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def prompt(text: str, tmp_path: Path, attachment: bytes | None = None,
           **values: Any) -> Prepared:
    settings = settings_for(tmp_path, **values)
    return image_prompt(text, LIMITS, settings, Storage(settings.images_dir),
                        attachment=attachment)


def test_leading_image_urls_are_split_from_the_prompt() -> None:
    assert split_image_urls("https://x.test/cat.png a cat in a hat") == (
        ["https://x.test/cat.png"], "a cat in a hat")
    assert split_image_urls("  <https://x.test/a.png|a.png> <http://y.test/b> two") == (
        ["https://x.test/a.png", "http://y.test/b"], "two")
    assert split_image_urls("a cat https://x.test/cat.png") == (
        [], "a cat https://x.test/cat.png")


def test_an_attached_image_becomes_an_img2img_request_with_its_shape(tmp_path: Path) -> None:
    prepared = prompt("a cat in a hat --seed 3", tmp_path, attachment=png(40, 24))
    request = prepared.request
    assert (request.mode, request.width, request.height) == ("img2img", 40, 24)
    assert (request.prompt, request.seed, request.strength) == (
        "a cat in a hat", 3, IMAGE_PROMPT_STRENGTH)
    assert request.source_image is not None and prepared.notes == ()
    stored = Storage(settings_for(tmp_path).images_dir).read(request.source_image)
    assert Image.open(io.BytesIO(stored)).size == (40, 24)
    # A larger image is scaled to the prompt's area (64×64 here) and says so.
    big = prompt("a cat", tmp_path, attachment=png(256, 128))
    assert (big.request.width, big.request.height) == (88, 40) and len(big.notes) == 1


def test_a_data_url_first_and_strength(tmp_path: Path) -> None:
    request = prompt(f"{data_url(png())} a cat --strength 0.3", tmp_path).request
    assert (request.mode, request.strength, request.prompt) == ("img2img", 0.3, "a cat")
    assert format_request(request, LIMITS) == "a cat --size 40x24 --strength 0.3"
    # --iw is image weight: 1 is the default strength, more is closer to the image.
    assert prompt(f"{data_url(png())} a cat --iw 2", tmp_path).request.strength == 0.36
    assert prompt(f"{data_url(png())} a cat --iw 1", tmp_path).request.strength == 0.6


@pytest.mark.parametrize(("text", "message"), [
    ("a cat --strength 0.3", "--strength only applies to an image prompt: put an image URL "
                             "first (https://…/cat.png a cat) or attach an image."),
    ("data:image/png;base64,AAAA a cat --strength 2",
     "--strength must be a number above 0 and at most 1"),
    ("data:image/png;base64,AAAA a --strength 0.3 --iw 1", "Give either --strength or --iw"),
    ("data:image/png;base64,AAAA data:image/png;base64,AAAA two",
     "The prompt starts with 2 image URLs: give one image"),
    ("data:image/png;base64,@@@@ a cat", "base64 is not valid"),
    ("data:image/png;base64,AAAA a cat", "not an image Pillow can read here"),
])
def test_bad_image_prompts_say_what_is_wrong(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ImagineError) as caught:
        prompt(text, tmp_path)
    assert message in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize(("ref", "message"), [
    ("data:text/plain;base64,AAAA", "The data URL holds text/plain, not an image"),
    ("data:image/png,rawbytes", "must look like data:image/png;base64,"),
    ("ftp://x.test/cat.png", "An image must be an http(s) URL or a data:image/…;base64, URL"),
])
def test_image_references_that_are_not_images(ref: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(PromptError) as caught:
        read_image_reference(settings_for(tmp_path), ref)
    assert message in caught.value.message


def test_an_attachment_and_a_url_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="either attached or as a URL first, not both"):
        prompt(f"{data_url(png())} a cat", tmp_path, attachment=png())


def test_the_grammar_keeps_strength_only_for_images() -> None:
    with pytest.raises(PromptError, match="--iw only applies to an image prompt"):
        parse("a cat --iw 1", LIMITS)
    assert "strength" not in parse("a cat", LIMITS).model_fields_set
    fields: dict[str, str | float | None] = {"prompt": "a cat", "strength": 0.25}
    assert request_from_fields(fields, LIMITS, image=True).strength == 0.25
    # The options of a chat command, written back as text for the image-prompt reader.
    text = format_request(request_from_fields(fields, LIMITS, image=True), LIMITS)
    assert text == "a cat --strength 0.25"
    assert parse(text, LIMITS, image=True).strength == 0.25


def test_a_url_is_fetched_only_where_outbound_requests_may_go(server: str,
                                                               tmp_path: Path) -> None:
    refused = settings_for(tmp_path)
    with pytest.raises(ImagineError) as caught:
        read_image_reference(refused, f"{server}/cat.png")
    assert "image address 127.0.0.1 is" in caught.value.message
    assert "only public addresses are allowed" in caught.value.message
    allowed: dict[str, Any] = {"outbound_allow": ("127.0.0.1",)}
    request = prompt(f"{server}/moved a cat", tmp_path, **allowed).request
    assert (request.mode, request.width, request.height) == ("img2img", 40, 24)
    with pytest.raises(PromptError, match="gave text/html, not an image"):
        prompt(f"{server}/page a cat", tmp_path, **allowed)
    with pytest.raises(PromptError, match="answered HTTP 404"):
        prompt(f"{server}/nothing a cat", tmp_path, **allowed)
    with pytest.raises(PromptError, match=r"larger than 1 KiB \(IMAGINE_MAX_UPLOAD_BYTES\)"):
        read_image_reference(settings_for(tmp_path, max_upload_bytes=1024, **allowed),
                             f"{server}/big.png")


def test_the_cli_draws_from_a_local_image_and_mask(tiny_model_dir: Path,
                                                   tmp_path: Path) -> None:
    env = {"IMAGINE_MODEL": str(tiny_model_dir), "IMAGINE_DEVICE": "cpu",
           "IMAGINE_TORCH_THREADS": "2", "IMAGINE_DEFAULT_STEPS": "2",
           "IMAGINE_DATA_DIR": str(tmp_path)}
    picture, mask = tmp_path / "in.png", tmp_path / "mask.png"
    picture.write_bytes(png(48, 40))
    painted = Image.new("L", (48, 40), 0)
    painted.paste(255, (0, 0, 24, 40))
    painted.save(mask)
    for extra, out in (([], tmp_path / "drawn.png"), (["--mask", str(mask)],
                                                      tmp_path / "inpainted.png")):
        result = CliRunner().invoke(cli, ["generate", "a cat --seed 2 --strength 0.5" if not
                                          extra else "a cat --seed 2", "--image", str(picture),
                                          *extra, "-o", str(out)], env=env)
        assert result.exit_code == 0, result.output
        assert f"seed 2 → {out}" in result.output and Image.open(out).size == (48, 40)
    refused = CliRunner().invoke(cli, ["generate", "a cat", "--mask", str(mask)], env=env)
    assert refused.exit_code == 2 and "--mask needs --image" in refused.output


def test_a_stored_txt2img_request_is_written_without_strength() -> None:
    stored = type(parse("a cat", LIMITS)).model_validate_json(
        parse("a cat", LIMITS).model_dump_json())
    assert format_request(stored, LIMITS) == "a cat"
