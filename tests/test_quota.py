"""Daily quotas (#15 item 4): images and GPU seconds per user and UTC day, overrides per
Discord role, Slack user group and user, refunds of jobs that drew nothing, and what each
front end says: Slack `/imagine quota`, Discord `/quota`, REST 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from bots.quota_text import quota_text
from generator.request import ImageRequest
from settings import Settings
from settings.i18n import use_locale
from tasks.core.connection import redis_client
from tasks.core.jobs import EXTRA_ROLES, Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.errors import QuotaExceeded
from tasks.policy.quota import Quotas, QuotaUsage
from tasks.worker.celery_app import create_celery
from tests.discord_support import DiscordStack, running_discord_stack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackSender
from tests.fixtures_redis import wait_for
from tests.web_support import with_settings

# 20:48 UTC: the reset is 3 h 12 min away.
EVENING = datetime(2026, 3, 14, 20, 48, tzinfo=timezone.utc).timestamp()
NEXT_DAY = datetime(2026, 3, 15, 0, 0, 1, tzinfo=timezone.utc).timestamp()
JSON = {"Accept": "application/json"}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _job(user: str = "42", platform: str = "discord", n: int = 1, roles: str = "") -> Job:
    extra = {EXTRA_ROLES: roles} if roles else {}
    return Job(requester=Requester(platform=platform, user=user, extra=extra),
               request=ImageRequest(prompt="a fox", num_images=n, seed=1))


def _quotas(settings: Settings, clock: Clock, **overrides: Any) -> Quotas:
    return Quotas(with_settings(settings, **overrides), redis_client(settings), clock)


def test_images_run_out_and_come_back_at_the_utc_reset(settings: Settings) -> None:
    clock = Clock(EVENING)
    quotas = _quotas(settings, clock, daily_quota=5)
    assert quotas.charge(_job(n=4)).charged == 4  # --n 4 counts 4
    with pytest.raises(QuotaExceeded) as few:
        quotas.charge(_job(n=2))
    assert few.value.status == 429 and few.value.retry_after == 3 * 3600 + 12 * 60
    assert few.value.message == (
        "You have used 4 of your 5 images today. This job makes 2; ask for at most 1 "
        "(--n 1). Your quota resets at 00:00 UTC, in 3 h 12 min.")
    quotas.charge(_job(n=1))
    with pytest.raises(QuotaExceeded) as spent:
        quotas.charge(_job(n=1))
    assert spent.value.message.startswith("You have used 5 of your 5 images today. Your quota")
    assert quotas.charge(_job(user="43")).charged == 1  # another user's day is their own
    clock.now = NEXT_DAY
    assert quotas.charge(_job(n=5)).charged == 5
    usage = quotas.usage("discord:42")
    assert (usage.images_used, usage.images_left, usage.seconds_to_reset) == (5, 0, 86_399)


def test_overrides_per_role_group_and_user(settings: Settings) -> None:
    quotas = _quotas(settings, Clock(EVENING), daily_quota=2, quota_overrides={
        "discord:role:10": 5, "discord:role:11": 8, "slack:group:S1": 0, "slack:group:S2": 3})

    def limit(job: Job) -> int | None:
        return quotas.usage_of(job.requester).images_limit

    assert limit(_job()) == 2
    assert limit(_job(roles="10")) == 5
    assert limit(_job(roles="10,11,99")) == 8  # the largest that applies
    assert limit(_job(platform="slack", user="U1", roles="S2")) == 3
    assert limit(_job(platform="slack", user="U1", roles="S1,S2")) is None  # 0: no limit
    assert limit(_job(platform="slack", user="U1", roles="10")) == 2  # a Discord role id
    quotas.set_override("discord:42", 1)  # an admin's word wins over every role
    assert limit(_job(roles="11")) == 1
    quotas.charge(_job(roles="11"))
    with pytest.raises(QuotaExceeded):
        quotas.charge(_job(roles="11"))
    quotas.set_override("discord:42", 0)
    assert quotas.usage_of(_job(roles="11").requester).unlimited
    quotas.charge(_job(n=4))
    quotas.set_override("discord:42", None)
    assert quotas.usage("discord:42", ["11"]).images_used == 5  # counted while unlimited


@pytest.fixture
def queue(settings: Settings) -> Iterator[JobQueue]:
    limited = with_settings(settings, daily_quota=3, daily_gpu_seconds=10.0)
    yield JobQueue(limited, redis_client(limited), create_celery(limited))


def _finish(queue: JobQueue, job_id: str, status: JobStatus, **fields: Any) -> Job:
    job = queue.jobs.update(job_id, lambda j: j.model_copy(update={"status": status,
                                                                   **fields}))
    queue.mark_finished(job)
    return job


def test_jobs_that_draw_nothing_give_their_images_back_and_gpu_time_counts(
        queue: JobQueue) -> None:
    quotas = queue.policy.quotas
    used = lambda: quotas.usage("discord:42").images_used  # noqa: E731
    queued = queue.submit(_job(n=2)).job
    assert queued.charged == 2 and used() == 2
    assert queue.cancel(queued.id).status is JobStatus.cancelled
    assert used() == 0
    failed = queue.submit(_job(n=3)).job
    with pytest.raises(QuotaExceeded):
        queue.submit(_job())
    _finish(queue, failed.id, JobStatus.failed, error="out of memory")
    queue.mark_finished(queue.jobs.get(failed.id))  # a retried finish refunds once
    assert used() == 0
    drawn = queue.submit(_job()).job
    _finish(queue, drawn.id, JobStatus.done, images=["a.png"], generation_seconds=12.5)
    queue.mark_finished(queue.jobs.get(drawn.id))
    usage = quotas.usage("discord:42")
    assert (usage.images_used, usage.gpu_used, usage.gpu_left) == (1, 12.5, 0.0)
    with pytest.raises(QuotaExceeded) as gpu:
        queue.submit(_job())
    assert gpu.value.message.startswith("You have used 12 of your 10 GPU seconds today.")
    refusals = [entry.rule for entry in queue.policy.audit.last(20)
                if entry.event == "policy.refused"]
    assert refusals == ["quota: images", "quota: gpu seconds"]


def test_quota_text_says_used_left_and_when_it_resets() -> None:
    usage = QuotaUsage(user="slack:U1", images_used=3, images_limit=10, gpu_used=41.6,
                       gpu_limit=120.0, seconds_to_reset=4000)
    assert quota_text(usage, bold="**") == (
        "**Your daily quota**\nImages: 3 of 10 used today, 7 left.\n"
        "GPU time: 42 of 120 seconds used today, 78 left.\n"
        "Your quota resets at 00:00 UTC, in 1 h 6 min.")
    free = QuotaUsage(user="slack:U1", images_used=1, images_limit=None, gpu_used=0,
                      gpu_limit=None, seconds_to_reset=50)
    assert quota_text(free) == "You have no daily limit; you made 1 image today."
    with use_locale("zh-CN"):
        assert "图片：今天已用 3 / 10 张，剩余 7 张。" in quota_text(usage)


def test_slack_imagine_quota_answers_the_asker_and_refuses_over_quota(
        serve_app: Callable[..., str], slack: FakeSlack, settings: Settings) -> None:
    base = serve_app(slack_signing_secret=SIGNING_SECRET, slack_bot_token=BOT_TOKEN,
                     slack_api_url=slack.api_url, daily_quota=2)
    quotas = _quotas(settings, Clock(datetime.now(timezone.utc).timestamp()), daily_quota=2)
    quotas.charge(_job(platform="slack", user="U0000USER"))
    sender = SlackSender(base, slack)
    answer = sender.command(" Quota ").json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("*Your daily quota*\nImages: 1 of 2 used today, 1 left.\n"
                                     "Your quota resets at 00:00 UTC, in ")
    quotas.charge(_job(platform="slack", user="U0000USER"))
    refused = sender.command("a red fox").json()
    assert refused["text"].startswith("You have used 2 of your 2 images today. Your quota "
                                      "resets at 00:00 UTC, in ")
    assert not slack.of("chat.postMessage", ok=None)  # nothing was queued


def test_rest_and_prompt_urls_answer_429_with_the_seconds_to_the_reset(
        serve_app: Callable[..., str]) -> None:
    base = serve_app(daily_quota=2)
    assert requests.post(f"{base}/api/v1/jobs", json={"prompt": "a fox"},
                         timeout=30).status_code == 202
    # An anonymous caller's API jobs and prompt URLs share one quota: their address's.
    assert requests.get(f"{base}/?prompt=a+hare&wait=0", headers=JSON,
                        timeout=30).status_code == 202
    refused = requests.post(f"{base}/api/v1/jobs", json={"prompt": "a fox"}, timeout=30)
    assert refused.status_code == 429
    assert refused.json()["error"].startswith("You have used 2 of your 2 images today.")
    now = datetime.now(timezone.utc).timestamp()
    assert abs(int(refused.headers["Retry-After"]) - (86_400 - now % 86_400)) < 5
    card = requests.get(f"{base}/?prompt=a+wolf&wait=0", timeout=30)
    assert card.status_code == 429 and card.headers["Content-Type"] == "image/png"
    assert abs(int(card.headers["Retry-After"]) - int(refused.headers["Retry-After"])) <= 2


@pytest.fixture
def discord_bot(redis_server: Any, tiny_model_dir: Path,
                tmp_path: Path) -> Iterator[DiscordStack]:
    """`imagine discord` alone (nothing here draws), with a daily quota of 3."""
    with running_discord_stack(redis_server, tmp_path, tiny_model_dir, FakeDiscord().start(),
                               workers=False, IMAGINE_DISCORD_READY_TIMEOUT="0.2",
                               IMAGINE_DAILY_QUOTA="3") as stack:
        yield stack


def test_discord_quota_is_ephemeral_with_used_and_left(discord_bot: DiscordStack,
                                                       settings: Settings) -> None:
    quotas = _quotas(settings, Clock(datetime.now(timezone.utc).timestamp()), daily_quota=3)
    quotas.charge(_job(user="4242", n=2))
    fake = discord_bot.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        user=fake.user("alice", "4242"), command="quota"))
    answer = wait_for(lambda: fake.find("POST", rf"^/interactions/{interaction['id']}/"), 60,
                      message=f"the callback\n{discord_bot.logs()}")[0].json
    assert answer["type"] == 4 and answer["data"]["flags"] & 64
    assert answer["data"]["content"].startswith(
        "**Your daily quota**\nImages: 2 of 3 used today, 1 left.\nYour quota resets at "
        "00:00 UTC, in ")
