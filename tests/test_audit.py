"""The audit trail: what a small run records, in order; `imagine audit export --since`;
`GET /api/v1/audit` for admin tokens only; the caps by length and age."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from bots.audit_query import parse_since
from bots.cli import cli
from bots.errors import PromptError
from bots.web.app import create_app
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.errors import AccessDenied
from tasks.names import AUDIT_STREAM_KEY
from tasks.policy.audit import AuditEntry, AuditLog
from tasks.policy.bans import Bans
from tasks.worker.celery_app import create_celery
from tasks.worker.runner import JobRunner
from tests.web_support import with_settings

ADMIN, BOT = "a" * 20, "b" * 20


def test_since_takes_ages_and_iso_dates_in_utc() -> None:
    now = 1_800_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("12h", now) == now - 12 * 3600
    assert parse_since("7d", now) == now - 7 * 86400
    midnight = datetime(2026, 1, 31, tzinfo=timezone.utc).timestamp()
    assert parse_since("2026-01-31", now) == midnight
    assert parse_since("2026-01-31T12:00", now) == midnight + 12 * 3600
    assert parse_since("2026-01-31T12:00+01:00", now) == midnight + 11 * 3600
    for bad in ("yesterday", "7 days", "-3d", ""):
        with pytest.raises(PromptError, match="30m, 12h or 7d.*2026-01-31"):
            parse_since(bad, now)


def _job(user: str, prompt: str) -> Job:
    return Job(requester=Requester(platform="slack", user=user, channel="C1"),
               request=ImageRequest(prompt=prompt, width=64, height=64))


def _small_run(settings: Settings) -> list[str]:
    """Submitted, refused (banned), cancelled, done: the ids in the order decided."""
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    kept = queue.submit(_job("U1", "a red fox")).job
    Bans(queue.redis).ban("slack:U2", by="slack:UADMIN")
    refused = _job("U2", "a grey wolf")
    with pytest.raises(AccessDenied):
        queue.submit(refused)
    queue.cancel(kept.id)
    drawn = queue.submit(_job("U1", "a blue bird")).job
    runner = JobRunner(settings, queue, None, None, lambda *_: None,  # type: ignore[arg-type]
                       AdapterRegistry())
    runner.finish(drawn, JobStatus.done, images=["0" * 32], seeds=[1])
    return [kept.id, refused.id, drawn.id]


def test_every_decision_of_a_small_run_is_exported_in_order(settings: Settings) -> None:
    started = time.time()
    kept, refused, drawn = _small_run(settings)
    result = CliRunner().invoke(cli, ["audit", "export", "--since", "1h"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(e["event"], e["job"]) for e in lines] == [
        ("job.submitted", kept), ("policy.refused", refused), ("job.cancelled", kept),
        ("job.submitted", drawn), ("job.done", drawn)]
    assert all(e["at"] >= started - 1 for e in lines)
    assert [e["at"] for e in lines] == sorted(e["at"] for e in lines)
    assert lines[1]["rule"] == "banned" and lines[1]["user"] == "slack:U2"
    assert lines[1]["prompt"] == "a grey wolf" and lines[4]["outcome"] == "done"
    # Nothing newer than the window: an ISO time after the run selects nothing.
    later = datetime.fromtimestamp(time.time() + 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert CliRunner().invoke(cli, ["audit", "export", "--since", later]).output == ""
    bad = CliRunner().invoke(cli, ["audit", "export", "--since", "last week"])
    assert bad.exit_code == 2 and "30m, 12h or 7d" in bad.output


def test_the_api_answers_admin_tokens_only(settings: Settings) -> None:
    _small_run(settings)
    app = create_app(with_settings(settings, api_tokens={"root": ADMIN, "ci": BOT},
                                   api_admins=("root",)))
    client = app.test_client()
    assert client.get("/api/v1/audit").status_code == 401
    assert client.get("/api/v1/audit", headers=_bearer("c" * 20)).status_code == 401
    refused = client.get("/api/v1/audit", headers=_bearer(BOT))
    assert refused.status_code == 403 and "IMAGINE_API_ADMINS" in refused.json["error"]
    answer = client.get("/api/v1/audit?since=1h", headers=_bearer(ADMIN))
    assert answer.status_code == 200 and answer.json["count"] == 5
    assert [e["event"] for e in answer.json["entries"]][:2] == ["job.submitted",
                                                                "policy.refused"]
    one = client.get("/api/v1/audit?since=1h&limit=1", headers=_bearer(ADMIN)).json
    assert one["count"] == 1 and one["entries"][0]["event"] == "job.submitted"
    bad = client.get("/api/v1/audit?since=soon", headers=_bearer(ADMIN))
    assert bad.status_code == 400 and "30m, 12h or 7d" in bad.json["error"]
    assert client.get("/api/v1/audit?limit=0", headers=_bearer(ADMIN)).status_code == 400
    # An open API (no tokens at all) has no admin: the trail stays closed.
    assert create_app(settings).test_client().get("/api/v1/audit").status_code == 401


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_stream_is_capped_by_length_and_by_age(settings: Settings) -> None:
    client = redis_client(settings)
    short = AuditLog(with_settings(settings, audit_max_entries=100), client)
    for n in range(350):
        short.record(AuditEntry(event="job.submitted", detail=str(n)))
    assert 100 <= client.xlen(AUDIT_STREAM_KEY) < 350  # MAXLEN ~ trims whole nodes
    assert short.last(1)[0].detail == "349"
    brief = AuditLog(with_settings(settings, audit_days=1.5 / 86400), client)
    brief.record(AuditEntry(event="job.submitted", detail="old"))
    time.sleep(1.6)
    brief.record(AuditEntry(event="job.done", detail="new"))
    assert [e.detail for e in brief.since(0)] == ["new"]
