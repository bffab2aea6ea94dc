"""The control image of --cn from every front end: which given image is which, how it is
fitted and stored (bots.image_prompts), the REST API's control_image, the CLI's --control,
Discord's `control` option and a message's second image, and Slack's second file."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from bots.cli import cli
from bots.errors import PromptError
from bots.image_prompts import image_prompt
from bots.limits import Limits
from bots.slack.client import web_client
from bots.slack.files import SharedFile, second_file
from bots.slack.intake import Held, SlackIntake
from bots.slack.jobs import SlackJobs
from generator import png
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import JobStore
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.worker.celery_app import create_celery
from tests.discord_support import DiscordStack, running_discord_stack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fixtures_redis import wait_for
from tests.image_support import settings_from_env, solid_png

CONTROLNETS = json.dumps({"canny": "unused/canny", "depth": "unused/depth"})
LIMITS = Limits(default_size=64, control_kinds=("canny", "depth"))


def size_of(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture
def local(tmp_path: Path) -> tuple[Settings, Storage]:
    settings = settings_from_env({"IMAGINE_STORAGE_DIR": str(tmp_path / "images")})
    return settings, Storage(settings.images_dir)


# --- which image is which ------------------------------------------------------------------


def test_one_image_with_cn_is_the_control_image(local: tuple[Settings, Storage]) -> None:
    settings, storage = local
    wide = solid_png("navy", (96, 48))
    prepared = image_prompt("a fox --cn canny:0.7", LIMITS, settings, storage,
                            attachment=wide)
    request = prepared.request
    assert (request.mode, request.control, request.control_weight) == ("txt2img", "canny", 0.7)
    # The control image's shape at the prompt's area (64×64), exactly the map's size.
    assert (request.width, request.height) == (88, 48)
    assert size_of(storage.read(str(request.control_image))) == (88, 48)
    # A data URL first counts as a given image too.
    by_url = image_prompt(f"{data_url(wide)} a fox --cn depth", LIMITS, settings, storage)
    assert by_url.request.control == "depth" and by_url.request.source_image is None


def test_two_images_with_cn_are_the_image_prompt_then_the_control_image(
        local: tuple[Settings, Storage]) -> None:
    settings, storage = local
    photo, edges = solid_png("red", (64, 48)), solid_png("white", (64, 64))
    prepared = image_prompt("a fox --cn depth --strength 0.5", LIMITS, settings, storage,
                            attachment=photo, attachments=(edges,))
    request = prepared.request
    assert (request.mode, request.strength, request.width, request.height) == (
        "img2img", 0.5, 64, 48)
    assert storage.read(str(request.source_image)) != storage.read(str(request.control_image))
    assert size_of(storage.read(str(request.control_image))) == (64, 48)
    assert prepared.notes == ("The control image was cropped to the image prompt's shape "
                              "(64×48).",)
    # A control image given as such: the one other image is the image prompt.
    marked = image_prompt("a fox --cn canny", LIMITS, settings, storage, attachment=photo,
                          control=edges).request
    assert (marked.mode, marked.control) == ("img2img", "canny")


@pytest.mark.parametrize(("text", "files", "control", "error"), [
    ("a fox", 1, True, "A control image needs --cn KIND in the prompt"),
    ("a fox --cn canny", 0, False, "--cn canny needs a control image: attach one"),
    ("a fox --cn canny", 3, False, "3 images came with --cn: give one (the control image) or "
                                   "two (the image prompt, then the control image)."),
    ("a fox --cn canny", 2, True, "2 images came with the control image"),
    ("a fox", 2, False, "2 images came with the prompt: give one, or add --cn KIND"),
    ("a fox --cn canny --strength 0.5", 1, False, "--strength only applies to an image prompt"),
    ("a fox --cn pose", 1, False, "--cn must be a ControlNet kind (canny, depth)"),
])
def test_images_and_cn_that_do_not_go_together(local: tuple[Settings, Storage], text: str,
                                               files: int, control: bool, error: str) -> None:
    settings, storage = local
    given = [solid_png(colour) for colour in ("red", "green", "blue")[:files]]
    with pytest.raises(PromptError) as caught:
        image_prompt(text, LIMITS, settings, storage, attachments=given,
                     control=solid_png() if control else None)
    assert caught.value.message.startswith(error)


def test_a_control_image_that_is_not_an_image_says_so(local: tuple[Settings, Storage]) -> None:
    settings, storage = local
    with pytest.raises(Exception) as caught:
        image_prompt("a fox --cn canny", LIMITS, settings, storage, attachment=b"hello")
    assert "control image" in str(caught.value)


# --- REST ----------------------------------------------------------------------------------


def test_rest_control_image(serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(controlnets={"canny": "unused/canny"}, max_jobs_per_user=50)
    jobs = JobStore(redis_client(settings), settings.job_ttl)
    edges = data_url(solid_png("white", (64, 32)))

    made = requests.post(f"{base}/api/v1/jobs", json={
        "prompt": "a fox", "cn": "canny:0.5", "control_image": edges, "seed": 2}, timeout=30)
    assert made.status_code == 202, made.text
    request = jobs.get(made.json()["id"]).request
    assert (request.control, request.control_weight, request.mode) == ("canny", 0.5, "txt2img")
    assert Storage(settings.images_dir).exists(str(request.control_image))

    both = requests.post(f"{base}/api/v1/jobs", json={
        "prompt": "a fox --cn canny", "image": data_url(solid_png("red")),
        "control_image": edges}, timeout=30)
    assert both.status_code == 202, both.text
    assert jobs.get(both.json()["id"]).request.mode == "img2img"
    first = requests.post(f"{base}/api/v1/jobs", json={"prompt": f"{edges} a fox --cn canny"},
                          timeout=30)
    assert jobs.get(first.json()["id"]).request.control == "canny"

    for body, error in [
        ({"prompt": "a fox", "control_image": edges}, "control_image needs cn"),
        ({"prompt": "a fox", "cn": "canny"}, "--cn canny needs a control image"),
        ({"prompt": "a fox --cn canny", "image": edges, "mask": edges, "control_image": edges},
         "control_image does not go with mask"),
        ({"prompt": "a fox --cn canny", "control_image": "data:text/plain;base64,aGk="},
         "The data URL holds text/plain, not an image"),
    ]:
        refused = requests.post(f"{base}/api/v1/jobs", json=body, timeout=30)
        assert refused.status_code == 400 and refused.json()["error"].startswith(error), (
            refused.text)


# --- CLI -----------------------------------------------------------------------------------


def test_cli_control(tmp_path: Path, tiny_model_dir: Path, tiny_controlnets: dict[str, Path],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("IMAGINE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("IMAGINE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("IMAGINE_DEVICE", "cpu")
    monkeypatch.setenv("IMAGINE_DEFAULT_SIZE", "64")
    monkeypatch.setenv("IMAGINE_CONTROLNETS", json.dumps(
        {kind: str(path) for kind, path in tiny_controlnets.items()}))
    edges = tmp_path / "edges.png"
    Image.new("RGB", (64, 64), "white").save(edges)
    out = tmp_path / "out.png"
    runner = CliRunner()
    made = runner.invoke(cli, ["generate", "a fox --cn canny:0.8 --steps 1 --seed 3",
                               "--control", str(edges), "-o", str(out)])
    assert made.exit_code == 0, made.output
    entries = png.parse_parameters(png.read_parameters(out.read_bytes()) or "").entries
    assert (entries["ControlNet"], entries["Control weight"]) == ("canny", "0.8")
    assert Storage.is_valid_name(entries["Control image"])

    refused = runner.invoke(cli, ["generate", "a fox", "--control", str(edges), "-o", str(out)])
    assert refused.exit_code == 1 and "--control needs --cn KIND" in refused.output
    missing = runner.invoke(cli, ["generate", "a fox --cn canny", "-o", str(out)])
    assert missing.exit_code == 1 and "--cn canny needs a control image" in missing.output


# --- Discord -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def discord(redis_server: Any, tiny_model_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscordStack]:
    with running_discord_stack(
            redis_server, tmp_path_factory.mktemp("discord-control"), tiny_model_dir,
            FakeDiscord().start(), workers=False, IMAGINE_CONTROLNETS=CONTROLNETS,
            IMAGINE_DISCORD_READY_TIMEOUT="0.2", IMAGINE_MAX_JOBS_PER_USER="20") as stack:
        yield stack


def _job_in(stack: DiscordStack, message: dict[str, Any]) -> Any:
    ids = [b["custom_id"] for row in message.get("components", []) for b in row["components"]]
    job_id = next(i for i in ids if i.startswith("imagine:cancel:")).split(":")[2]
    return JobStore(redis_client(settings_from_env(stack.env)), 3600).get(job_id)


def _status_of(stack: DiscordStack, match: Callable[[Any], bool]) -> dict[str, Any]:
    def found() -> list[dict[str, Any]]:
        return [c.json for c in stack.fake.find(status=200)
                if c.json and c.json.get("components") and match(c)]
    try:
        return wait_for(found, 60, interval=0.1)[0]
    except AssertionError:
        raise AssertionError(f"no status message\n{stack.logs()}") from None


def test_discord_control_option_and_second_attachment(discord: DiscordStack) -> None:
    fake = discord.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a harbour --cn depth", image=fake.attachment(solid_png("red"), "photo.png"),
        control=fake.attachment(solid_png("white"), "edges.png")))
    token = interaction["token"]
    job = _job_in(discord, _status_of(discord, lambda c: token in c.path))
    assert (job.request.mode, job.request.control) == ("img2img", "depth")

    message = fake.dispatch("MESSAGE_CREATE", fake.message_payload(
        "a harbour --cn canny:0.5", attachments=[
            fake.attachment(solid_png("red"), "a.png"), fake.attachment(solid_png(), "b.png")]))
    reply = _status_of(discord, lambda c: str((c.json.get("message_reference") or {}).get(
        "message_id")) == message["id"])
    job = _job_in(discord, reply)
    assert (job.request.mode, job.request.control, job.request.control_weight) == (
        "img2img", "canny", 0.5)

    alone = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a harbour", control=fake.attachment(solid_png(), "edges.png")))
    said = wait_for(lambda: fake.find("POST", rf"^/interactions/{alone['id']}/"), 60)[0].json
    assert said["data"]["content"].startswith("⚠️ The control image needs --cn KIND")


# --- Slack ---------------------------------------------------------------------------------


def test_slack_second_file_is_the_control_image(slack: FakeSlack, imagine_env: dict[str, str]
                                                 ) -> None:
    settings = settings_from_env({**imagine_env, "SLACK_BOT_TOKEN": BOT_TOKEN,
                                  "SLACK_API_URL": slack.api_url,
                                  "IMAGINE_CONTROLNETS": CONTROLNETS})
    client = redis_client(settings)
    slack_jobs = SlackJobs(settings, JobQueue(settings, client, create_celery(settings)),
                           web_client(settings))
    intake = SlackIntake(settings, slack_jobs, Limits.from_settings(settings))
    event = {"files": [slack.share_file(solid_png("red"), "photo.png"),
                       slack.share_file(solid_png("white"), "edges.png")]}
    second = second_file(event)
    assert second is not None and second.name == "edges.png"
    held = Held(user="U0000USER", channel="C0000CHAN", thread="1700000400.000100",
                text="a moth --cn canny", file=SharedFile.from_event(event["files"][0]),
                second=second)
    intake.finish(held)
    request = JobStore(client, 3600).get(held.job_id).request
    assert (request.mode, request.control) == ("img2img", "canny")
    assert len(slack.of("file_download", None)) == 2
