"""Live previews in chat status messages (#14): real Redis, the real Deliverer with the real
platform adapters, the fake Discord and Slack servers; previews put where the worker puts
them (tasks.core.previews.PreviewStore) and the job's `preview` count bumped as it does.

Discord: a progress edit uploads the latest preview as the status message's attachment
(multipart PATCH), only when it is newer than the one shown; the result leaves no preview
behind, and no progress edit comes after it. Slack: an image block pointing at the web's
preview.jpg, only when IMAGINE_PUBLIC_URL is an https address Slack can reach.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bots.discord.delivery import DiscordDelivery
from bots.slack.delivery import SlackDelivery
from bots.slack.previews import reachable_by_slack
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry, Deliverer, DeliveryContext
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.previews import PreviewStore, encode_preview
from tasks.core.storage import Storage
from tasks.names import SLACK_PROGRESS_PACE_KEY, SLACK_STATUS_THROTTLE_KEY
from tests.discord_support import running_discord_stack
from tests.fakes.discord_server import BOT_TOKEN, Call, FakeDiscord
from tests.fakes.slack_api import BOT_TOKEN as SLACK_TOKEN
from tests.fakes.slack_api import FakeSlack
from tests.fixtures_redis import wait_for
from tests.web_support import with_settings

STATUS_EDIT = r"^/channels/\d+/messages/\d+$|^/webhooks/\d+/[^/]+/messages/@original$"


@pytest.fixture
def discord() -> Any:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def discord_settings(settings: Settings, discord: FakeDiscord) -> Settings:
    return with_settings(settings, discord_token=BOT_TOKEN, discord_api_url=discord.api_url)


def deliverer(settings: Settings, platform: str, adapter: Any) -> Deliverer:
    return Deliverer(settings, redis_client(settings), Storage(settings.images_dir),
                     AdapterRegistry({platform: adapter}))


def png(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, format="PNG")
    return out.getvalue()


def store_preview(settings: Settings, job: Job, color: str) -> Job:
    """What the worker's reporter does: the JPEG in Redis, then the count on the job."""
    PreviewStore(redis_client(settings), 600).put(job.id, encode_preview(
        Image.new("RGB", (64, 64), color)))
    return job.model_copy(update={"preview": job.preview + 1, "step": job.step + 5})


def channel_status(discord: FakeDiscord) -> str:
    """A status message posted in the channel by the bot (mention jobs), its id."""
    call = Call("POST", "", {}, {}, json={"content": "queued"})
    return str(discord._create_message(call, discord.channel_id)[1]["id"])


def interaction_status(discord: FakeDiscord) -> dict[str, str]:
    """A deferred /imagine whose original response is the status message: its extra."""
    payload = discord.command_payload(prompt="a fox")
    call = Call("POST", "", {"with_response": "1"}, {}, json={"type": 5})
    discord._callback(call, payload["id"], payload["token"])
    return {"application_id": discord.application_id, "interaction_token": payload["token"],
            "interaction_created": f"{time.time():.3f}"}


def discord_job(discord: FakeDiscord, *, interaction: bool) -> Job:
    requester = (Requester(platform="discord", user="1", channel=discord.channel_id,
                           extra=interaction_status(discord)) if interaction else
                 Requester(platform="discord", user="1", channel=discord.channel_id,
                           message=channel_status(discord)))
    return Job(requester=requester, request=ImageRequest(prompt="a fox"),
               status=JobStatus.running, step=0, total_steps=20)


def status_message(discord: FakeDiscord, job: Job) -> dict[str, Any]:
    if job.requester.message:
        return discord.messages[job.requester.message]
    return discord.messages[discord._originals[job.requester.extra["interaction_token"]]]


def preview_edits(discord: FakeDiscord) -> list[Call]:
    return [c for c in discord.find("PATCH", STATUS_EDIT, status=200) if c.files]


@pytest.mark.parametrize("interaction", [False, True], ids=["channel", "interaction"])
def test_discord_status_shows_each_new_preview_once(discord: FakeDiscord,
                                                    discord_settings: Settings,
                                                    interaction: bool) -> None:
    delivery = deliverer(discord_settings, "discord", DiscordDelivery)
    job = discord_job(discord, interaction=interaction)
    delivery.deliver_progress(job, None)  # no preview yet: text only, as before
    assert not preview_edits(discord)
    job = store_preview(discord_settings, job, "red")
    delivery.deliver_progress(job, None)
    delivery.deliver_progress(job, None)  # the same preview again: no second upload
    edits = preview_edits(discord)
    assert len(edits) == 1
    upload = edits[0].files[0]
    assert upload["filename"] == "preview.jpg" and upload["type"] == "image/jpeg"
    assert upload["data"][:3] == b"\xff\xd8\xff"
    assert edits[0].json["attachments"] == [{"id": 0, "filename": "preview.jpg",
                                             "description": "live preview"}]
    assert "5/20" in edits[0].json["content"]  # the text progress stays
    shown = status_message(discord, job)
    assert [a["filename"] for a in shown["attachments"]] == ["preview.jpg"]
    job = store_preview(discord_settings, job, "blue")
    delivery.deliver_progress(job, None)
    assert len(preview_edits(discord)) == 2
    # The newer preview replaced the older one: still one attachment.
    assert len(status_message(discord, job)["attachments"]) == 1
    assert "10/20" in status_message(discord, job)["content"]


def test_discord_result_leaves_no_preview_and_stops_them(discord: FakeDiscord,
                                                         discord_settings: Settings) -> None:
    delivery = deliverer(discord_settings, "discord", DiscordDelivery)
    job = store_preview(discord_settings, discord_job(discord, interaction=False), "red")
    delivery.deliver_progress(job, None)
    status_id = job.requester.message
    assert discord.messages[status_id]["attachments"]
    image = Storage(discord_settings.images_dir).put(png("green"))
    done = job.model_copy(update={"status": JobStatus.done, "images": [image], "seeds": [7]})
    delivery.deliver_result(done)
    # Done: the images are a new message and the status message (with its preview) is gone.
    assert status_id in discord.deleted
    posted = discord.posts_with_files()
    assert [f["filename"] for f in posted[-1].files] == ["imagine-7.png"]
    # A progress task loaded while the job ran, arriving late: nothing more is edited.
    calls = len(discord.calls)
    late = store_preview(discord_settings, job, "blue")
    delivery.deliver_progress(late, None)
    DiscordDelivery(discord_settings).deliver_progress(_context(discord_settings, late), None)
    assert len(discord.calls) == calls


def _context(settings: Settings, job: Job) -> DeliveryContext:
    """The adapter's own context, past the Deliverer's check of finished jobs."""
    return DeliveryContext(settings, Storage(settings.images_dir), redis_client(settings), job,
                           "progress")


@pytest.mark.parametrize("interaction", [False, True], ids=["channel", "interaction"])
def test_discord_failed_job_final_status_drops_the_preview(discord: FakeDiscord,
                                                           discord_settings: Settings,
                                                           interaction: bool) -> None:
    delivery = deliverer(discord_settings, "discord", DiscordDelivery)
    job = store_preview(discord_settings, discord_job(discord, interaction=interaction), "red")
    delivery.deliver_progress(job, None)
    assert status_message(discord, job)["attachments"]
    failed = job.model_copy(update={"status": JobStatus.failed, "error": "out of memory"})
    delivery.deliver_result(failed)
    final = status_message(discord, job)
    assert final["attachments"] == []
    assert "out of memory" in final["content"]
    # The adapter itself (the Deliverer's finished-job check aside) edits nothing more.
    calls = len(discord.calls)
    late = store_preview(discord_settings, job, "blue")
    DiscordDelivery(discord_settings).deliver_progress(_context(discord_settings, late), None)
    assert len(discord.calls) == calls
    assert status_message(discord, job) == final


# --- Slack ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "reachable"), [
    ("https://imagine.example.com", True),
    ("https://imagine.example.com:8443/base/", True),
    ("https://203.0.113.9", False),  # documentation range: not global
    ("https://8.8.8.8", True),
    ("http://imagine.example.com", False),
    ("https://localhost:8080", False),
    ("https://app.localhost", False),
    ("https://127.0.0.1", False),
    ("https://10.1.2.3", False),
    ("https://192.168.0.10:8080", False),
    ("https://172.16.5.5", False),
    ("https://169.254.1.1", False),
    ("https://[::1]:8080", False),
    ("https://[fd00::1]", False),
    ("https://[2606:4700::1111]", True),
    ("https://imagine", False),
    ("https://[::1", False),
    ("", False),
])
def test_reachable_by_slack(url: str, reachable: bool) -> None:
    assert reachable_by_slack(url) is reachable


def slack_job(slack: FakeSlack) -> Job:
    posted = slack.handle("chat.postMessage", {"channel": "C1", "text": "queued"},
                          SLACK_TOKEN, b"")[1]
    return Job(requester=Requester(platform="slack", user="U1", channel="C1",
                                   message=posted["ts"], thread=posted["ts"],
                                   extra={"team": "T1"}),
               request=ImageRequest(prompt="a fox"), status=JobStatus.running, step=3,
               total_steps=20, preview=2)


def slack_blocks(slack: FakeSlack, job: Job) -> list[dict[str, Any]]:
    return list(slack.message("C1", job.requester.message)["blocks"])


@pytest.mark.parametrize("public_url", ["https://imagine.example.com/",
                                        "http://localhost:8080"])
def test_slack_progress_links_the_preview_only_when_slack_can_fetch_it(
        slack: FakeSlack, settings: Settings, public_url: str) -> None:
    slack_settings = with_settings(settings, slack_bot_token=SLACK_TOKEN,
                                   slack_api_url=slack.api_url, public_url=public_url)
    delivery = deliverer(slack_settings, "slack", SlackDelivery)
    job = slack_job(slack)
    delivery.deliver_progress(job, None)
    blocks = slack_blocks(slack, job)
    images = [b for b in blocks if b["type"] == "image"]
    assert "step 3/20" in blocks[0]["text"]["text"]
    if public_url.startswith("https"):
        assert images == [{"type": "image", "block_id": "imagine-preview", "alt_text":
                           "live preview", "image_url":
                           f"https://imagine.example.com/api/v1/jobs/{job.id}/preview.jpg?v=2"}]
        assert [b["type"] for b in blocks] == ["section", "image", "actions"]
    else:
        assert images == []
        assert [b["type"] for b in blocks] == ["section", "actions"]
    # The result replaces the message: no image block left.
    image = Storage(slack_settings.images_dir).put(png("green"))
    delivery.deliver_result(job.model_copy(update={"status": JobStatus.done, "images": [image],
                                                   "seeds": [7]}))
    assert not [b for b in slack_blocks(slack, job) if b["type"] == "image"]
    # No edit after it, with or without a preview.
    client = redis_client(slack_settings)
    for pattern in (SLACK_PROGRESS_PACE_KEY, SLACK_STATUS_THROTTLE_KEY):
        for key in client.scan_iter(pattern.format("*")):
            client.delete(key)
    final = slack.message("C1", job.requester.message)
    late = job.model_copy(update={"preview": 3})
    SlackDelivery(slack_settings).deliver_progress(_context(slack_settings, late), None)
    assert slack.message("C1", job.requester.message) == final


# --- end to end: a real bot, real workers drawing with previews -----------------------------

def test_discord_end_to_end_previews_on_the_status_message(
        redis_server: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    """`imagine discord` (discord.py) defers a /imagine; the generate worker stores previews
    while drawing; the deliver worker uploads them to the original response; the result is a
    followup, the status message is deleted and no edit follows."""
    redis_server.client().flushall()
    with running_discord_stack(
            redis_server, tmp_path, tiny_model_dir, FakeDiscord().start(),
            IMAGINE_PREVIEW_INTERVAL="0.1", IMAGINE_DEFAULT_SIZE="128",
            IMAGINE_MAX_STEPS="200", IMAGINE_DISCORD_READY_TIMEOUT="0.2") as stack:
        fake = stack.fake
        interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
            prompt="a lighthouse at dusk", steps=120, seed=3))
        original = rf"^/webhooks/\d+/{interaction['token']}/messages/@original$"
        try:
            wait_for(lambda: fake.find("DELETE", original, status=204), 180.0,
                     message="the status message removed after the result")
        except AssertionError:
            raise AssertionError(stack.logs()) from None
        followups = [c for c in fake.posts_with_files()
                     if c.path.startswith(f"/webhooks/{fake.application_id}/")]
        assert len(followups) == 1
        assert followups[0].files[0]["data"].startswith(b"\x89PNG")
        edits = fake.find("PATCH", original, status=200)
        with_preview = [c for c in edits if c.files]
        assert with_preview, [c.json.get("content") for c in edits]
        for call in with_preview:
            assert [(f["filename"], f["type"]) for f in call.files] == [
                ("preview.jpg", "image/jpeg")]
            assert call.files[0]["data"][:3] == b"\xff\xd8\xff"
            assert "/120" in call.json["content"]  # the text progress stays with it
        deleted_at = fake.find("DELETE", original, status=204)[0].at
        time.sleep(1.0)  # a late progress task would have landed by now
        assert all(c.at < deleted_at for c in fake.find("PATCH", original))


def test_slack_progress_stays_when_slack_cannot_fetch_the_preview(
        slack: FakeSlack, settings: Settings) -> None:
    """Slack refuses an edit whose image it cannot download (invalid_blocks): the progress
    goes out again without the image instead of not at all."""
    slack_settings = with_settings(settings, slack_bot_token=SLACK_TOKEN,
                                   slack_api_url=slack.api_url,
                                   public_url="https://imagine.example.com")
    job = slack_job(slack)
    slack.fail("chat.update", "invalid_blocks")
    deliverer(slack_settings, "slack", SlackDelivery).deliver_progress(job, None)
    tried, shown = slack.of("chat.update", ok=None)[-2:]
    assert tried.answer.get("error") == "invalid_blocks"
    sent = tried.params["blocks"]  # JSON in a form post, a list in a JSON one
    sent = json.loads(sent) if isinstance(sent, str) else sent
    assert any(b["type"] == "image" for b in sent)
    assert [b["type"] for b in slack_blocks(slack, job)] == ["section", "actions"]
    assert "step 3/20" in slack_blocks(slack, job)[0]["text"]["text"]
    assert shown.params["ts"] == job.requester.message


def test_discord_job_back_in_the_queue_loses_its_preview(discord: FakeDiscord,
                                                         discord_settings: Settings) -> None:
    """A job whose worker died goes back to the queue: its old preview is taken down."""
    delivery = deliverer(discord_settings, "discord", DiscordDelivery)
    job = store_preview(discord_settings, discord_job(discord, interaction=False), "red")
    delivery.deliver_progress(job, None)
    assert status_message(discord, job)["attachments"]
    delivery.deliver_progress(job.model_copy(update={"status": JobStatus.queued}), 2)
    assert status_message(discord, job)["attachments"] == []
    edits = discord.find("PATCH", STATUS_EDIT, status=200)
    assert edits[-1].json["attachments"] == [] and not edits[-1].files
    # Drawn again: the next preview is shown even though its count is not higher than before.
    again = job.model_copy(update={"status": JobStatus.running})
    delivery.deliver_progress(again, None)
    assert [a["filename"] for a in status_message(discord, job)["attachments"]] == [
        "preview.jpg"]
