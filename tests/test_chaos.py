"""Chaos: Redis stops and comes back (same port, its data in the append-only file) while the
web app (prompt URLs, the REST API, Slack in HTTP mode), a generate worker and a deliver
worker run. During the outage every request is a clear 503 with Retry-After, never a 500 or
a traceback; afterwards every job submitted before the outage finishes, and the Slack one is
delivered once in its thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tasks.local.embedded_redis import EmbeddedRedis, free_port
from tests.fakes.slack_api import FakeSlack, SlackSender
from tests.fixtures_redis import Process, wait_for
from tests.slack_support import SlackStack, healthz_ok, new_status, uploads_in

OUTAGE_SECONDS = 3.0
# A deliver worker that died mid-delivery holds that job's delivery lock this long.
LOCK_SECONDS = 10
# The first job is still drawing when Redis goes away, the others are waiting.
SLOW_JOB = {"size": "256", "steps": 40}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "chaos-redis", port=free_port(), appendonly=True)
    server.start()
    yield server
    server.stop()


def outage_requests(base: str, job_id: str) -> list[tuple[str, requests.Response]]:
    """One of each kind of request a client makes, sent while Redis is down."""
    png, json_ = {"Accept": "image/png"}, {"Accept": "application/json"}
    return [
        ("prompt URL", requests.get(f"{base}/", params={"prompt": "an outage"}, headers=png,
                                    timeout=30)),
        ("prompt URL (JSON)", requests.get(f"{base}/", params={"prompt": "an outage 2"},
                                           headers=json_, timeout=30)),
        ("API POST", requests.post(f"{base}/api/v1/jobs", json={"prompt": "a fox"}, timeout=30)),
        ("API GET", requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=30)),
        ("healthz", requests.get(f"{base}/healthz", timeout=30)),
    ]


def test_redis_restart_under_load(own_redis: EmbeddedRedis, slack: FakeSlack,
                                  start_process: Callable[..., Process],
                                  start_worker: Callable[..., Process]) -> None:
    stack = SlackStack(start_process, start_worker, slack, IMAGINE_REDIS_URL=own_redis.url,
                       IMAGINE_MAX_JOBS_PER_USER="10",
                       IMAGINE_DELIVERY_LOCK_SECONDS=str(LOCK_SECONDS))
    stack.start()
    base, logs = stack.app_url, stack.logs

    # Before the outage: API jobs (some still waiting or drawing when Redis stops) and a
    # Slack command.
    ids = []
    for n in range(4):
        posted = requests.post(f"{base}/api/v1/jobs", timeout=10,
                               json={"prompt": f"a lighthouse {n}", **(SLOW_JOB if n else {})})
        assert posted.status_code == 202, posted.text
        ids.append(posted.json()["id"])
    sender = SlackSender(base, slack)
    assert sender.command("a fox in the snow --seed 5").status_code == 200
    status = new_status(slack, 0)

    wait_for(lambda: requests.get(f"{base}/api/v1/jobs/{ids[1]}", timeout=10).json()["status"]
             == "running", 60, interval=0.05, message="the slow job to start drawing")
    own_redis.stop()  # SIGTERM: the append-only file is flushed
    deadline = time.monotonic() + OUTAGE_SECONDS
    answers = []
    while time.monotonic() < deadline or not answers:
        answers += outage_requests(base, ids[0])
        time.sleep(0.2)
    for what, answer in answers:
        assert answer.status_code == 503, (what, answer.status_code, answer.text[:300])
        assert answer.headers.get("Retry-After"), what
        assert b"Traceback" not in answer.content, what
    own_redis.start()

    def all_done() -> bool:
        statuses = [requests.get(f"{base}/api/v1/jobs/{i}", timeout=10).json().get("status")
                    for i in ids]
        assert "failed" not in statuses, statuses
        return statuses == ["done"] * len(ids)

    try:
        wait_for(all_done, 90, interval=0.5, message="every job submitted before the outage")
        wait_for(lambda: healthz_ok(stack.port), 30, message="healthz after the outage")
        done = wait_for(lambda: "— done" in (m := slack.message(status["channel"],
                                                                 status["ts"]))["text"] and m,
                        # A deliver worker that died mid-delivery held the job's
                        # delivery lock: the delivery goes on when that lock ends.
                        60 + LOCK_SECONDS, interval=0.2, message="the Slack job's result")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None
    assert done["text"].startswith("<@U0000USER>: a fox in the snow")
    assert len(uploads_in(slack, status["channel"], status["ts"])) == 1
    assert len(slack.of("files.completeUploadExternal")) == 1
