"""Report and Delete under a result (#15): on Slack (the real app over HTTP, the fake Web API)
and on Discord (the real client in this process against the fake), with finished jobs the
test delivers itself. A report reaches the report channel once per reporter and the audit;
Delete by someone else is refused; Delete by the requester removes the message, the
uploaded files, the stored images and the prompt-URL cache entry, and is audited.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import discord
import pytest
import yarl
from PIL import Image

from bots.slack.delivery import SlackDelivery
from bots.web.cache import PromptCache
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry, Deliverer
from tasks.core.jobs import Job, JobStatus, JobStore, Requester
from tasks.core.storage import Storage
from tasks.policy.audit import AuditLog
from tests.fakes.discord_server import BOT_TOKEN, Call, FakeDiscord, snowflake
from tests.fakes.slack_api import BOT_TOKEN as SLACK_TOKEN
from tests.fakes.slack_api import SIGNING_SECRET, FakeSlack, SlackSender, buttons
from tests.fixtures_redis import wait_for
from tests.web_support import with_settings

REPORTS = "CREPORTS"


def png(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, format="PNG")
    return out.getvalue()


def done_job(settings: Settings, requester: Requester) -> Job:
    image = Storage(settings.images_dir).put(png("purple"))
    job = Job(requester=requester, request=ImageRequest(prompt="a purple fox", seed=1),
              status=JobStatus.done, images=[image], seeds=[1], finished_at=time.time())
    JobStore(redis_client(settings), settings.job_ttl).save(job)
    # Its prompt URL's cache entry too, as if the same image had been asked for by URL.
    PromptCache(redis_client(settings), settings.job_ttl).remember("key-1", job.id, image)
    return job


def events(settings: Settings, job: Job) -> list[tuple[str, str]]:
    entries = AuditLog(settings, redis_client(settings)).last(50)
    return [(e.event, e.actor) for e in entries if e.job == job.id]


def assert_removed(settings: Settings, job: Job, actor: str) -> None:
    client = redis_client(settings)
    assert not Storage(settings.images_dir).exists(job.images[0])
    assert PromptCache(client, settings.job_ttl).get("key-1") is None
    assert JobStore(client, settings.job_ttl).get(job.id).deleted_by == actor
    assert events(settings, job)[-1] == ("image.deleted", actor)


def test_slack_report_and_delete(slack: FakeSlack, settings: Settings,
                                 serve_app: Callable[..., str]) -> None:
    overrides = {"slack_bot_token": SLACK_TOKEN, "slack_api_url": slack.api_url,
                 "slack_signing_secret": SIGNING_SECRET, "slack_report_channel": REPORTS}
    chosen = with_settings(settings, **overrides)
    posted = slack.handle("chat.postMessage", {"channel": "C1", "text": "queued"},
                          SLACK_TOKEN, b"")[1]
    job = done_job(chosen, Requester(platform="slack", user="U0000USER", channel="C1",
                                     message=posted["ts"], thread=posted["ts"]))
    Deliverer(chosen, redis_client(chosen), Storage(chosen.images_dir),
              AdapterRegistry({"slack": SlackDelivery})).deliver_result(job)
    result = slack.message("C1", posted["ts"])
    labels = buttons(result)
    sender = SlackSender(serve_app(**overrides), slack)

    def press(label: str, user: str) -> str:
        notes = len(slack.of("response_url"))
        assert sender.click(labels[label], result, user=user).status_code == 200
        return str(wait_for(lambda: slack.of("response_url")[notes:], message=label)[0]
                   .params["text"])

    assert "sent to the admins" in press("🚩 Report", "U0000EVE")
    assert "sent to the admins" in press("🚩 Report", "U0000EVE")  # once in the channel
    (report,) = [m for m in slack.messages.values() if m["channel"] == REPORTS]
    assert "<@U0000EVE>" in report["text"] and "<@U0000USER>" in report["text"]
    assert "a purple fox" in report["text"] and "fake.slack.com/archives/C1" in report["text"]
    assert report["files"][0]["bytes"] == png("purple")

    assert "Only <@U0000USER> or a moderator" in press("🗑️ Delete", "U0000EVE")
    assert Storage(chosen.images_dir).exists(job.images[0])
    assert "Deleted" in press("🗑️ Delete", "U0000USER")
    assert ("C1", posted["ts"]) not in slack.messages
    uploaded = [m for m in slack.thread("C1", posted["ts"]) if m.get("subtype") == "file_share"]
    assert uploaded and all(not m["files"] for m in uploaded)
    assert_removed(chosen, job, "slack:U0000USER")
    assert events(chosen, job) == [("image.reported", "slack:U0000EVE"),
                                   ("image.deleted", "slack:U0000USER")]


# --- Discord -------------------------------------------------------------------------------

class Bot:
    """The real client, started in this process on its own event loop."""

    def __init__(self, settings: Settings, fake: FakeDiscord) -> None:
        from bots.discord.main import create_bot  # noqa: PLC0415
        from tasks.core.queue import JobQueue  # noqa: PLC0415
        from tasks.worker.celery_app import create_celery  # noqa: PLC0415

        self.fake = fake
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        queue = JobQueue(settings, redis_client(settings), create_celery(settings))

        async def make() -> Any:
            return create_bot(settings, queue)

        self.bot = asyncio.run_coroutine_threadsafe(make(), self.loop).result(30)
        asyncio.run_coroutine_threadsafe(self.bot.start(BOT_TOKEN), self.loop)
        wait_for(lambda: fake.connected and self.bot.is_ready(), 30, message="the bot")

    def press(self, name: str, job: Job, message: dict[str, Any], user: dict[str, Any],
              permissions: str = "0") -> str:
        payload = self.fake.button_payload(f"imagine:{name}:{job.id}:0", message, user)
        payload["member"]["permissions"] = permissions
        self.fake.dispatch("INTERACTION_CREATE", payload)

        def answered() -> Any:
            for call in self.fake.find("POST", status=None):
                if call.path.startswith(f"/interactions/{payload['id']}/"):
                    return call
            return None

        body = wait_for(answered, 10, message=f"the answer to {name}").json
        assert body["type"] == 4 and body["data"]["flags"] & 64  # ephemeral
        return str(body["data"]["content"])

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.bot.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def bot(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bot]:
    fake = FakeDiscord().start()
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_url)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        yarl.URL(fake.gateway_url))
    started = Bot(with_settings(settings, discord_ready_timeout=0.2,
                                discord_report_channel=REPORT_CHANNEL), fake)
    try:
        yield started
    finally:
        started.stop()
        fake.stop()


REPORT_CHANNEL = snowflake()


def test_discord_report_and_delete(settings: Settings, bot: Bot) -> None:
    fake = bot.fake
    owner, eve = fake.user("owner"), fake.user("eve")
    job = done_job(settings, Requester(platform="discord", user=owner["id"],
                                       channel=fake.channel_id))
    # The result with its buttons (discord.py finds a pressed button in the message).
    row = [{"type": 2, "style": 2, "label": name, "custom_id": f"imagine:{name}:{job.id}:0"}
           for name in ("report", "delete")]
    result = fake._create_message(Call("POST", "", {}, {}, json={
        "content": "a purple fox", "components": [{"type": 1, "components": row}]}),
        fake.channel_id)[1]
    assert "sent to the admins" in bot.press("report", job, result, eve)
    assert "sent to the admins" in bot.press("report", job, result, eve)
    (report,) = fake.find("POST", rf"^/channels/{REPORT_CHANNEL}/messages$")
    content = report.json["content"]
    assert f"<@{eve['id']}>" in content and f"<@{owner['id']}>" in content
    assert "a purple fox" in content and result["id"] in content  # the jump link
    assert report.files[0]["data"] == png("purple")

    assert "or a moderator can delete" in bot.press("delete", job, result, eve)
    assert not fake.find("DELETE", rf"/messages/{result['id']}$")
    assert "Deleted" in bot.press("delete", job, result, owner)
    assert fake.find("DELETE", rf"^/channels/{fake.channel_id}/messages/{result['id']}$")
    assert_removed(settings, job, f"discord:{owner['id']}")
    assert [e for e, _ in events(settings, job)] == ["image.reported", "image.deleted"]


def test_rest_purge_deletes_a_finished_jobs_images_for_its_owner(settings: Settings) -> None:
    from bots.web import tokens  # noqa: PLC0415
    from bots.web.app import create_app  # noqa: PLC0415

    chosen = with_settings(settings, api_tokens={"ci": "c" * 20, "other": "o" * 20})
    job = done_job(chosen, Requester(platform="api", user="ci"))
    JobStore(redis_client(chosen), chosen.job_ttl).update(job.id, lambda j: j.model_copy(
        update={"owner": tokens.owner_of(chosen, "ci")}))
    client = create_app(chosen).test_client()
    mine, theirs = {"Authorization": "Bearer " + "c" * 20}, {"Authorization": "Bearer " + "o" * 20}
    assert client.delete(f"/api/v1/jobs/{job.id}", headers=mine).status_code == 409
    assert client.delete(f"/api/v1/jobs/{job.id}?purge=1", headers=theirs).status_code == 404
    answer = client.delete(f"/api/v1/jobs/{job.id}?purge=1", headers=mine)
    assert answer.status_code == 200 and answer.json["deleted"] is True
    assert_removed(chosen, job, "api:ci")
