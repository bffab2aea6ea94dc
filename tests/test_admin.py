"""Admin commands (#15): every command on Slack (`/imagine admin …`, signed requests to the
Bolt app in this process, fake Slack Web API) and on Discord (`/imagine-admin …`, a real
discord.py client in this process against the fake Discord), the refusal for non-admins,
and a paused queue: a generate message holds its job back, goes back in line, and the job is
drawn once the queue is resumed (the real Celery task, in this process)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import discord
import pytest
import yarl
from flask import Flask
from PIL import Image

from bots.admin import AdminUsage, parse_text
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import ImageVerdict, Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.names import BANNED_KEY, BLOCKED_IMAGES_KEY, GENERATE_QUEUE, GENERATE_TASK, QUOTA_OVERRIDE_KEY
from tasks.policy.audit import AuditLog
from tasks.policy.pause import QueuePause
from tasks.worker.celery_app import create_celery
from tests.fakes.discord_server import BOT_TOKEN, FakeDiscord, snowflake
from tests.fakes.slack_api import BOT_TOKEN as SLACK_TOKEN
from tests.fakes.slack_api import SIGNING_SECRET, FakeSlack, command_payload, sign
from tests.fixtures_redis import wait_for

ADMIN, MEMBER, TARGET = "UADMIN01", "UMEMBER1", "UTARGET1"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def _queue(settings: Settings) -> JobQueue:
    return JobQueue(settings, redis_client(settings), create_celery(settings))


def _waiting(queue: JobQueue, platform: str, user: str, prompt: str) -> Job:
    job = Job(requester=Requester(platform=platform, user=user, channel="C1"),
              request=ImageRequest(prompt=prompt, seed=1, width=64, height=64,
                                   num_inference_steps=1))
    return queue.submit(job).job


def _withheld(queue: JobQueue, settings: Settings, platform: str, user: str) -> Job:
    """A finished job whose only image the image policy withheld."""
    name = Storage(settings.images_dir).put(_png())
    job = Job(requester=Requester(platform=platform, user=user, channel="C1"),
              request=ImageRequest(prompt="something withheld", seed=3),
              status=JobStatus.done, images=[name], seeds=[3], finished_at=time.time(),
              verdicts=[ImageVerdict(score=0.97, flagged=True, source="classifier",
                                     action="block")])
    queue.jobs.save(job)
    queue.redis.zadd(BLOCKED_IMAGES_KEY, {f"{job.id}:0": time.time()})
    return job


def _events(settings: Settings) -> list[tuple[str, str, str, str]]:
    return [(e.event, e.user, e.actor, e.outcome)
            for e in AuditLog(settings, redis_client(settings)).last(200)]


def test_slack_text_parses_into_the_commands_discord_options_give() -> None:
    command = parse_text("admin ban <@U012AB|ann> posting spam")
    assert (command.name, command.user, command.reason) == ("ban", "slack:U012AB",
                                                             "posting spam")
    assert parse_text("admin quota U012AB default").images is None
    assert parse_text("admin quota api:ci-bot 0").user == "api:ci-bot"
    assert parse_text("admin audit 50").count == 50
    reveal = parse_text("admin reveal ABCDEF0123456789 2")
    assert (reveal.job, reveal.image) == ("abcdef0123456789", 2)
    for bad, says in [("admin", "Admin commands"), ("admin shrug", "no admin command shrug"),
                      ("admin ban @ann", "member ID"), ("admin audit 51", "from 1 to 50"),
                      ("admin quota U012AB", "number of images"),
                      ("admin delete not-a-job", "not a job id")]:
        with pytest.raises(AdminUsage) as refused:
            parse_text(bad)
        assert says in refused.value.message and "/imagine admin pause" in refused.value.message


# --- Slack -----------------------------------------------------------------------------------


@pytest.fixture
def slack_app(settings: Settings, slack: FakeSlack,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """`/imagine TEXT` sent by `user` to the Bolt app mounted in this process; returns what
    the app answered through the command's response_url."""
    from bots.slack.app import mount_slack

    for key, value in {"SLACK_BOT_TOKEN": SLACK_TOKEN, "SLACK_API_URL": slack.api_url,
                       "SLACK_SIGNING_SECRET": SIGNING_SECRET}.items():
        monkeypatch.setenv(key, value)
    web = Flask("admin-test")
    mount_slack(web, Settings(_env_file=None), _queue(settings))
    client = web.test_client()

    def send(text: str, user: str = ADMIN, *, answered: bool = True) -> str:
        answers = len(slack.of("response_url"))
        body = urlencode(command_payload(text, slack.response_url(), user=user)).encode()
        response = client.post("/slack/events", data=body, headers={
            **sign(body), "Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200, response.data
        if not answered:
            return ""
        calls = wait_for(lambda: slack.of("response_url")[answers:], 20,
                         message=f"the answer to {text}")
        assert calls[0].params["response_type"] == "ephemeral"
        return str(calls[0].params["text"])

    yield send


def test_every_admin_command_on_slack(settings: Settings, slack: FakeSlack,
                                      slack_app: Callable[..., str]) -> None:
    slack.users[ADMIN] = {"is_admin": True}
    queue = _queue(settings)
    assert "Admin commands" in slack_app("admin")
    assert "no admin command nap" in slack_app("admin nap")

    assert "is banned" in slack_app(f"admin ban <@{TARGET}|tom> spam")
    assert queue.redis.hexists(BANNED_KEY, f"slack:{TARGET}")
    assert "may use the bot again" in slack_app(f"admin unban {TARGET}")
    assert "was not banned" in slack_app(f"admin unban {TARGET}")
    assert "5 images a day" in slack_app(f"admin quota <@{TARGET}> 5")
    assert queue.redis.hget(QUOTA_OVERRIDE_KEY, f"slack:{TARGET}") == b"5"
    assert "rules again" in slack_app(f"admin quota {TARGET} default")
    assert not queue.redis.hexists(QUOTA_OVERRIDE_KEY, f"slack:{TARGET}")

    assert "Paused" in slack_app("admin pause")
    waiting = [_waiting(queue, "slack", TARGET, f"a quiet lake {i}") for i in range(2)]
    slack_app("a paused fox", user=TARGET, answered=False)  # accepted, told why it waits
    status = wait_for(lambda: slack.of("chat.postMessage"), 20, message="the status")[0]
    assert "an admin paused the queue" in status.params["text"]
    listing = slack_app("admin queue")
    assert "Paused by" in listing and "Waiting: 3" in listing and waiting[0].id in listing
    assert f"<@{TARGET}>" in listing and "a quiet lake 0" in listing
    assert "Cancelled 3 waiting job(s)" in slack_app(f"admin purge {TARGET}")
    assert all(queue.jobs.get(j.id).status is JobStatus.cancelled for j in waiting)
    assert "Resumed" in slack_app("admin resume")
    assert "was not paused" in slack_app("admin resume")

    job = _withheld(queue, settings, "slack", TARGET)
    assert job.id in slack_app("admin reveal")
    answer = slack_app(f"admin reveal {job.id}")
    assert "withheld by the image policy" in answer and "direct messages" in answer
    (upload,) = [m for m in slack.messages.values() if m.get("subtype") == "file_share"]
    assert upload["channel"] == "D" + ADMIN[1:]
    assert upload["files"][0]["bytes"] == Storage(settings.images_dir).read(job.images[0])
    assert "Deleted the stored images" in slack_app(f"admin delete {job.id}")
    assert queue.jobs.get(job.id).deleted_by == f"slack:{ADMIN}"
    assert not Storage(settings.images_dir).exists(job.images[0])

    audit = slack_app("admin audit 3")
    assert audit.count("\n") == 3 and "`admin.delete`" in audit and "image.deleted" in audit
    # The admin's role is asked once and remembered (the user's language is cached apart).
    assert len([c for c in slack.of("users.info") if "include_locale" not in c.params]) == 1
    events = _events(settings)
    admin_events = [e for e in events if e[0].startswith("admin.")]
    assert [e[0] for e in admin_events] == [
        "admin.ban", "admin.unban", "admin.unban", "admin.quota", "admin.quota",
        "admin.pause", "admin.queue", "admin.purge", "admin.resume", "admin.resume",
        "admin.reveal", "admin.reveal", "admin.delete", "admin.audit"]
    assert all(e[2] == f"slack:{ADMIN}" for e in admin_events)
    assert ("admin.ban", f"slack:{TARGET}", f"slack:{ADMIN}", "done") in events
    assert ("image.revealed", f"slack:{TARGET}", f"slack:{ADMIN}", "revealed") in events


def test_a_slack_member_is_refused_and_the_refusal_audited(
        settings: Settings, slack_app: Callable[..., str]) -> None:
    answer = slack_app(f"admin ban {TARGET}", user=MEMBER)
    assert "Only admins can use admin commands" in answer
    assert not redis_client(settings).hexists(BANNED_KEY, f"slack:{TARGET}")
    assert "Only admins" in slack_app("admin", user=MEMBER)
    assert _events(settings)[-2:] == [("admin.ban", "", f"slack:{MEMBER}", "refused"),
                                      ("admin.unknown", "", f"slack:{MEMBER}", "refused")]


# --- Discord ---------------------------------------------------------------------------------


class DiscordBot:
    """The bot's client with its commands, started in this process on its own event loop."""

    def __init__(self, settings: Settings, fake: FakeDiscord) -> None:
        from bots.discord.main import create_bot

        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make() -> Any:
            return create_bot(settings, _queue(settings))

        self.bot = asyncio.run_coroutine_threadsafe(make(), self.loop).result(30)
        self.running = asyncio.run_coroutine_threadsafe(self.bot.start(BOT_TOKEN), self.loop)
        wait_for(lambda: fake.connected and self.bot.is_ready(), 30, message="the bot")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.bot.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def admin(self, name: str, member: dict[str, Any], *,
              permissions: str = "2251799813685247", **options: Any) -> dict[str, Any]:
        """`/imagine-admin NAME options…` by `member`; the message the bot answered with."""
        types = {str: 3, int: 4}
        resolved: dict[str, Any] = {}
        values = []
        for key, value in options.items():
            if isinstance(value, dict):  # a user option
                values.append({"name": key, "type": 6, "value": value["id"]})
                resolved.setdefault("users", {})[value["id"]] = value
            else:
                values.append({"name": key, "type": types[type(value)], "value": value})
        data: dict[str, Any] = {"id": snowflake(), "name": "imagine-admin", "type": 1,
                                "options": [{"name": name, "type": 1, "options": values}]}
        if resolved:
            data["resolved"] = resolved
        payload = self.fake.interaction_payload(data, member)
        payload["member"]["permissions"] = permissions
        self.fake.dispatch("INTERACTION_CREATE", payload)
        path = f"/webhooks/{payload['application_id']}/{payload['token']}"

        def answered() -> Any:
            for call in self.fake.find("POST", status=None):
                if call.path == path:
                    return call
                if call.path.startswith(f"/interactions/{payload['id']}/") and (
                        (call.json or {}).get("type") == 4):
                    return call
            return None

        call = wait_for(answered, 30, message=f"the answer to /imagine-admin {name}")
        body = call.json.get("data", call.json) if call.path.startswith("/interactions") \
            else call.json
        assert body["flags"] & 64, body  # ephemeral
        return {"content": body["content"], "files": call.files}


@pytest.fixture
def discord_bot(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[DiscordBot]:
    fake = FakeDiscord().start()
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_url)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        yarl.URL(fake.gateway_url))
    bot = DiscordBot(settings.model_copy(update={"discord_ready_timeout": 0.2}), fake)
    try:
        yield bot
    finally:
        bot.stop()
        fake.stop()


def test_every_admin_command_on_discord(settings: Settings, discord_bot: DiscordBot) -> None:
    fake, queue = discord_bot.fake, _queue(settings)
    owner, target = fake.owner, fake.user("tom")
    key = f"discord:{target['id']}"

    def say(name: str, **options: Any) -> str:
        return str(discord_bot.admin(name, owner, **options)["content"])

    assert "is banned" in say("ban", user=target, reason="spam")
    assert json.loads(queue.redis.hget(BANNED_KEY, key))["reason"] == "spam"
    assert "may use the bot again" in say("unban", user=target)
    assert "7 images a day" in say("quota", user=target, images=7)
    assert "rules again" in say("quota", user=target)
    assert "Paused" in say("pause")
    job = _waiting(queue, "discord", target["id"], "a red kite")
    listing = say("queue")
    assert job.id in listing and f"<@{target['id']}>" in listing
    assert "Cancelled 1 waiting job(s)" in say("purge", user=target)
    assert "Resumed" in say("resume")
    withheld = _withheld(queue, settings, "discord", target["id"])
    shown = discord_bot.admin("reveal", owner, job=withheld.id)
    assert "withheld by the image policy" in shown["content"]
    assert shown["files"][0]["filename"].startswith("SPOILER_imagine-")
    assert shown["files"][0]["data"] == Storage(settings.images_dir).read(withheld.images[0])
    assert "Deleted the stored images" in say("delete", job=withheld.id)
    assert "`admin.delete`" in say("audit", count=2)
    admin_events = [e for e in _events(settings) if e[0].startswith("admin.")]
    assert len(admin_events) == 11 and {e[2] for e in admin_events} == {
        f"discord:{owner['id']}"}

    refused = discord_bot.admin("ban", fake.user("mallory"), permissions="0", user=target)
    assert "Only admins can use admin commands" in refused["content"]
    assert not queue.redis.hexists(BANNED_KEY, key)


def test_the_command_is_registered_for_manage_server(settings: Settings) -> None:
    from bots.discord.commands import all_commands
    from bots.limits import Limits

    (group,) = [c for c in all_commands(Limits.from_settings(settings))
                if c.name == "imagine-admin"]
    assert isinstance(group, discord.app_commands.Group)
    assert group.default_permissions == discord.Permissions(manage_guild=True)
    assert {c.name for c in group.commands} == {
        "ban", "unban", "quota", "purge", "pause", "resume", "queue", "audit", "reveal",
        "delete"}


# --- pause -----------------------------------------------------------------------------------


def test_a_paused_queue_holds_its_jobs_until_resumed(settings: Settings,
                                                     one_torch_thread: None) -> None:
    from tasks.worker.celery_tasks import register

    # A short visibility timeout: a paused message waits about a second, then goes back.
    settings = settings.model_copy(update={"visibility_timeout": 2})
    app = create_celery(settings)
    register(app)
    queue = _queue(settings)
    pause = QueuePause(queue.redis)
    pause.pause("slack:UADMIN01")
    job = _waiting(queue, "cli", "me", "a paused fox")
    messages = queue.redis.llen(GENERATE_QUEUE)
    generate = app.tasks[GENERATE_TASK]

    generate.apply(args=[job.id])  # holds, then sends itself again: the job keeps a message
    assert queue.jobs.get(job.id).status is JobStatus.queued
    assert queue.redis.llen(GENERATE_QUEUE) == messages + 1

    holding = threading.Thread(target=generate.apply, args=([job.id],))
    holding.start()
    time.sleep(0.3)
    pause.resume()  # while a message holds: it goes on and draws
    holding.join(60)
    done = queue.jobs.get(job.id)
    assert done.status is JobStatus.done, done.error
    assert queue.redis.llen(GENERATE_QUEUE) == messages + 1
