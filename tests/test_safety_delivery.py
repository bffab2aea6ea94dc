"""Image safety on every front end (#15, delivery side): finished jobs whose verdicts the test
sets itself (real PNGs in storage, no classifier), delivered in this process by the real
adapters to the fake Discord and Slack, served by the real web app.

Discord: a spoilered image is a SPOILER_ attachment, a blocked one is not attached and the
message says so (the model's safety checker named when it was its verdict). Slack: the
blurred copy is uploaded, Show original sends the original to the requester's DM and
refuses anyone else; blocked images are not uploaded. Prompt URLs: 451 for a blocked image,
the blurred copy for a spoilered one, the original only with `reveal=1`. REST and webhooks:
each image's `nsfw`, no url for a blocked one, `original_url` for a spoilered one.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import discord as discord_py
import pytest
import torch
from PIL import Image

from bots.cli_safety import judge, warning
from bots.discord.delivery import DiscordDelivery
from bots.discord.reveal import reveal_original
from bots.safety_view import withheld_lines
from bots.slack.delivery import SlackDelivery
from bots.web.app import create_app
from bots.web.query import cache_key, read_query
from bots.web.webhook_delivery import WebhookDelivery
from generator.request import ImageRequest
from generator.results import GeneratedImage
from generator.safety import SafetyModel
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry, Deliverer
from tasks.core.jobs import EXTRA_LOCALE, ImageVerdict, Job, JobStatus, JobStore, Requester
from tasks.core.storage import Storage
from tasks.policy.audit import AuditLog
from tests.fakes.discord_server import BOT_TOKEN, Call, FakeDiscord
from tests.fakes.slack_api import BOT_TOKEN as SLACK_TOKEN
from tests.fakes.slack_api import SIGNING_SECRET, FakeSlack, SlackSender, buttons
from tests.fakes.webhook import webhook_receiver
from tests.fixtures_redis import wait_for
from tests.web_support import with_settings

ALLOWED = ImageVerdict(score=0.1)


def png(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, format="PNG")
    return out.getvalue()


def stored(settings: Settings, *colors: str) -> list[str]:
    storage = Storage(settings.images_dir)
    return [storage.put(png(color)) for color in colors]


def spoiler(settings: Settings) -> ImageVerdict:
    """A flagged image's verdict where policy spoilers it, with its blurred copy stored."""
    (blurred,) = stored(settings, "gray")
    return ImageVerdict(score=0.93, flagged=True, source="classifier", action="spoiler",
                        blurred=blurred)


def blocked(source: str = "classifier") -> ImageVerdict:
    return ImageVerdict(score=1.0 if source == "pipeline" else 0.97, flagged=True,
                        source=source, action="block")


def finished(settings: Settings, requester: Requester, verdicts: list[ImageVerdict],
             prompt: str = "a fox") -> Job:
    colors = ("red", "green", "blue", "yellow")[:len(verdicts)]
    return Job(requester=requester, request=ImageRequest(prompt=prompt, seed=1),
               status=JobStatus.done, images=stored(settings, *colors),
               seeds=list(range(1, len(verdicts) + 1)), verdicts=verdicts,
               finished_at=time.time())


def deliverer(settings: Settings, platform: str, adapter: Any) -> Deliverer:
    return Deliverer(settings, redis_client(settings), Storage(settings.images_dir),
                     AdapterRegistry({platform: adapter}))


# --- Discord -------------------------------------------------------------------------------

@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


def discord_requester(discord: FakeDiscord) -> Requester:
    status = Call("POST", "", {}, {}, json={"content": "queued"})
    message = str(discord._create_message(status, discord.channel_id)[1]["id"])
    return Requester(platform="discord", user="1", channel=discord.channel_id, message=message)


def test_discord_spoilers_and_withholds(discord: FakeDiscord, settings: Settings) -> None:
    discord_settings = with_settings(settings, discord_token=BOT_TOKEN,
                                     discord_api_url=discord.api_url)
    delivery = deliverer(discord_settings, "discord", DiscordDelivery)
    job = finished(discord_settings, discord_requester(discord),
                   [ALLOWED, spoiler(discord_settings), blocked()])
    delivery.deliver_result(job)
    post = discord.posts_with_files()[-1]
    assert [f["filename"] for f in post.files] == ["imagine-1.png", "SPOILER_imagine-2.png"]
    assert post.files[1]["data"] == Storage(discord_settings.images_dir).read(job.images[1])
    assert "1 image was withheld by this server's image policy." in post.json["content"]
    labels = [b.get("label") for row in post.json["components"] for b in row["components"]]
    assert {"U1", "U2", "V1", "V2"} <= set(labels) and "U3" not in labels
    assert "Show original" not in labels  # Discord spoilers instead

    # Every image withheld by the model's own checker: a message without files says why.
    pipeline = finished(discord_settings, discord_requester(discord),
                        [blocked("pipeline"), blocked("pipeline")], prompt="a cat")
    delivery.deliver_result(pipeline)
    said = [c for c in discord.find("POST", rf"^/channels/{discord.channel_id}/messages$")
            if "a cat" in (c.json or {}).get("content", "")][-1]
    assert not said.files
    assert "2 images were withheld by the model's safety checker." in said.json["content"]


# --- Slack ---------------------------------------------------------------------------------

def slack_settings(settings: Settings, slack: FakeSlack) -> Settings:
    return with_settings(settings, slack_bot_token=SLACK_TOKEN, slack_api_url=slack.api_url,
                         slack_signing_secret=SIGNING_SECRET)


def test_slack_uploads_blurred_and_reveals_to_the_requester_only(
        slack: FakeSlack, settings: Settings, serve_app: Callable[..., str]) -> None:
    chosen = slack_settings(settings, slack)
    posted = slack.handle("chat.postMessage", {"channel": "C1", "text": "queued"},
                          SLACK_TOKEN, b"")[1]
    requester = Requester(platform="slack", user="U0000USER", channel="C1",
                          message=posted["ts"], thread=posted["ts"], extra={"team": "T1"})
    job = finished(chosen, requester, [ALLOWED, spoiler(chosen), blocked()])
    JobStore(redis_client(chosen), chosen.job_ttl).save(job)
    deliverer(chosen, "slack", SlackDelivery).deliver_result(job)

    storage = Storage(chosen.images_dir)
    (upload,) = [m for m in slack.thread("C1", posted["ts"]) if m.get("subtype") == "file_share"]
    assert [f["bytes"] for f in upload["files"]] == [
        storage.read(job.images[0]), storage.read(job.verdicts[1].blurred or "")]
    assert "withheld by this server's image policy" in upload["text"]
    result = slack.message("C1", posted["ts"])
    assert "1 image was withheld" in result["text"]
    reveal = buttons(result)["👁️ Show original"]

    sender = SlackSender(serve_app(slack_bot_token=SLACK_TOKEN, slack_api_url=slack.api_url,
                                   slack_signing_secret=SIGNING_SECRET), slack)
    notes = len(slack.of("response_url"))
    assert sender.click(reveal, result, user="U0000EVE").status_code == 200
    note = wait_for(lambda: slack.of("response_url")[notes:], message="the refusal")[0]
    assert "Only the person who asked" in note.params["text"]
    assert not slack.of("conversations.open")

    assert sender.click(reveal, result, user="U0000USER").status_code == 200
    wait_for(lambda: len(slack.of("response_url")) > notes + 1, message="the reveal")
    assert [c.params["users"] for c in slack.of("conversations.open")] == ["U0000USER"]
    (dm,) = [m for m in slack.messages.values()
             if m["channel"] == "D0000USER" and m.get("subtype") == "file_share"]
    assert [f["bytes"] for f in dm["files"]] == [storage.read(job.images[1])]
    assert "direct messages" in slack.of("response_url")[-1].params["text"]
    events = [e for e in AuditLog(chosen, redis_client(chosen)).last(20) if e.job == job.id]
    assert [(e.event, e.actor) for e in events] == [("image.revealed", "slack:U0000USER")]


# --- the web: prompt URLs, the REST API, webhooks ------------------------------------------

def prompt_key(settings: Settings, args: dict[str, list[str]]) -> str:
    app = create_app(settings)
    state = app.extensions["imagine.web"]
    request = read_query(args, state.limits).request
    return cache_key(request, state.model_source(request.model))


def test_prompt_urls_withhold_blur_and_reveal(settings: Settings) -> None:
    app = create_app(settings)
    state = app.extensions["imagine.web"]
    client = app.test_client()
    storage = Storage(settings.images_dir)
    web = Requester(platform="web", user="127.0.0.1")
    # Drawn and remembered: a blocked image is a 451 card (JSON for scripts).
    block = finished(settings, web, [blocked()])
    state.cache.remember(prompt_key(settings, {"prompt": ["a bad fox"]}), block.id,
                         block.images[0], "block")
    card = client.get("/?prompt=a+bad+fox")
    assert card.status_code == 451 and card.mimetype == "image/png"
    assert card.data != storage.read(block.images[0])
    as_json = client.get("/?prompt=a+bad+fox&reveal=1", headers={"Accept": "application/json"})
    assert as_json.status_code == 451
    assert as_json.json["error"] == "This image was withheld by this server's image policy."

    # Its job just finished: the verdict goes into the cache entry, the blurred copy out.
    job = finished(settings, web, [spoiler(settings)])
    key = prompt_key(settings, {"prompt": ["a shy fox"]})
    state.cache.claim(key, job.id)
    JobStore(state.redis, settings.job_ttl).save(job)
    for _ in range(2):  # the first from the job, the second from the cache entry
        blurred = client.get("/?prompt=a+shy+fox&wait=0")
        assert blurred.status_code == 200
        assert blurred.data == storage.read(job.verdicts[0].blurred or "")
    entry = state.cache.get(key)
    assert entry is not None and (entry.action, entry.blurred) == ("spoiler",
                                                                   job.verdicts[0].blurred)
    original = client.get("/?prompt=a+shy+fox&reveal=1")
    assert original.status_code == 200 and original.data == storage.read(job.images[0])
    again = client.get("/?prompt=a+shy+fox&wait=0")  # the memo keeps them apart
    assert again.data == storage.read(job.verdicts[0].blurred or "")


def test_api_and_webhook_show_verdicts(settings: Settings) -> None:
    allowed = with_settings(settings, outbound_allow=("127.0.0.1",))
    client = create_app(allowed).test_client()
    with webhook_receiver() as hook:
        requester = Requester(platform="webhook", user="127.0.0.1", extra={"url": hook.url})
        job = finished(allowed, requester, [ALLOWED, spoiler(allowed), blocked("pipeline")])
        JobStore(redis_client(allowed), allowed.job_ttl).save(job)
        deliverer(allowed, "webhook", WebhookDelivery).deliver_result(job)
        (sent,) = hook.accepted("result")
    view = client.get(f"/api/v1/jobs/{job.id}").json
    for images in (view["images"], sent["images"]):
        first, second, third = images
        assert first["nsfw"] == {"score": 0.1, "flagged": False, "action": "allow"}
        assert first["url"].endswith(f"/images/{job.images[0]}.png")
        assert "original_url" not in first
        assert second["nsfw"] == {"score": 0.93, "flagged": True, "action": "spoiler"}
        assert second["url"].endswith(f"/images/{job.verdicts[1].blurred}.png")
        assert second["original_url"].endswith(f"/images/{job.images[1]}.png")
        assert third["name"] is None and third["url"] is None
        assert third["withheld"] == "Withheld by the model's safety checker."
    storage = Storage(allowed.images_dir)
    assert base64.b64decode(sent["images"][1]["png_base64"]) == storage.read(
        job.verdicts[1].blurred or "")
    assert "png_base64" not in sent["images"][2]
    assert job.images[2] not in json.dumps(sent)  # not even its name
    schema = client.get("/api/v1/openapi.json").json
    image = schema["components"]["schemas"]["Job"]["properties"]["images"]["items"]
    assert "nsfw" in image["required"] and "451" in schema["paths"]["/"]["get"]["responses"]


def test_withheld_lines_speak_the_requesters_language() -> None:
    job = Job(requester=Requester(platform="discord", user="1", extra={EXTRA_LOCALE: "zh-CN"}),
              request=ImageRequest(prompt="a fox"), status=JobStatus.done,
              images=["a" * 64, "b" * 64, "c" * 64],
              verdicts=[blocked(), blocked("pipeline"), ALLOWED])
    assert withheld_lines(job, blur=False) == ["根据本服务器的图片政策，已扣留 1 张图片。",
                                               "模型自带的安全检查器扣留了 1 张图片。"]
    english = job.model_copy(update={"requester": Requester(platform="discord", user="1")})
    assert withheld_lines(english, blur=False) == [
        "1 image was withheld by this server's image policy.",
        "1 image was withheld by the model's safety checker."]


def test_imagine_generate_warns_of_a_flagged_image(tiny_model_dir: Path,
                                                   settings: Settings) -> None:
    """What `imagine generate` prints (bots/cli_safety.py), judged by the tiny classifier
    through the worker's own review, without drawing (the engine's cost is not this test's)."""
    request = ImageRequest(prompt="a fox", seed=3)
    drawn = GeneratedImage(png("red"), seed=3, width=64, height=64)
    flag_all = with_settings(settings, nsfw_threshold=0.0)
    classifier = SafetyModel(str(tiny_model_dir / "nsfw"), flag_all.nsfw_labels, "cpu",
                             torch.float32)
    (verdict,) = judge(flag_all, classifier, request, [drawn])
    assert (verdict.flagged, verdict.source, verdict.action) == (True, "classifier", "allow")
    line = warning(verdict, 1, "out.png") or ""
    assert re.fullmatch(r"warning: image 1 \(out\.png\) was flagged: NSFW score [01]\.\d\d\.",
                        line), line
    # The model's own safety checker, and a policy that blocks: not written, and said so.
    black = GeneratedImage(png("black"), seed=4, width=64, height=64, pipeline_flagged=True)
    blocking = with_settings(settings, nsfw_policy="cli=block")
    (blocked_verdict,) = judge(blocking, None, request, [black])
    assert warning(blocked_verdict, 2, "out-2.png") == (
        "warning: image 2 was flagged (the model's own safety checker withheld it (a black "
        "image)) and not written (IMAGINE_NSFW_POLICY cli=block).")
    assert warning(ImageVerdict(), 1, "out.png") is None


def test_discord_show_original_answers_the_requester_alone(
        discord: FakeDiscord, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discord results carry no Show original; one pressed anyway (a real discord.py
    interaction from the fake's payload) answers ephemerally: the original for the
    requester, a refusal for anyone else."""
    monkeypatch.setattr(discord_py.http.Route, "BASE", discord.api_url.rstrip("/"))
    alice, eve = discord.user("alice"), discord.user("eve")
    job = finished(settings, Requester(platform="discord", user=alice["id"],
                                       channel=discord.channel_id), [spoiler(settings)])
    storage = Storage(settings.images_dir)
    message = {"id": "1", "channel_id": discord.channel_id, "content": "", "components": []}

    async def press(user: dict[str, Any]) -> None:
        client = discord_py.Client(intents=discord_py.Intents.none())
        await client.login(BOT_TOKEN)
        try:
            payload = discord.button_payload(f"imagine:reveal:{job.id}:0", message, user)
            interaction = discord_py.Interaction(data=payload, state=client._connection)
            await reveal_original(interaction, job, storage, settings, redis_client(settings))
        finally:
            await client.close()

    asyncio.run(press(eve))
    asyncio.run(press(alice))
    refusal, shown = [c for c in discord.calls if "/callback" in c.path]
    assert refusal.json["data"]["flags"] == 64 and not refusal.files
    assert "Only the person who asked" in refusal.json["data"]["content"]
    assert shown.json["data"]["flags"] == 64
    assert [f["data"] for f in shown.files] == [storage.read(job.images[0])]
