"""`imagine jobs` and `imagine jobs cancel` with a real Redis and real queue operations (jobs
submitted, one claimed as a worker would; no worker process needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bots.cli import cli
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.worker.celery_app import create_celery


def make_queue(settings: Settings) -> JobQueue:
    return JobQueue(settings, redis_client(settings), create_celery(settings))


def job(platform: str, user: str, channel: str = "", prompt: str = "a red fox",
        steps: int = 2) -> Job:
    return Job(requester=Requester(platform=platform, user=user, channel=channel),
               request=ImageRequest(prompt=prompt, width=64, height=64,  # type: ignore[call-arg]
                                    num_inference_steps=steps, seed=1))


def jobs(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["jobs", *args])
    return result.exit_code, result.output


def test_lists_running_then_waiting_jobs_with_who_where_position_and_age(
        settings: Settings) -> None:
    queue = make_queue(settings)
    first = queue.submit(job("slack", "U0001", "C0001", "a lighthouse at dusk", steps=3)).job
    second = queue.submit(job("discord", "4242", "9001")).job
    third = queue.submit(job("web", "203.0.113.9")).job
    [drawn] = queue.claim("default", "gpu-host:77", "ticket-1")
    assert drawn.id == first.id
    queue.jobs.update(first.id, lambda j: j.model_copy(update={"step": 1, "total_steps": 3}))

    code, output = jobs("--json")
    assert code == 0, output
    listed = json.loads(output)["jobs"]
    assert [line["id"] for line in listed] == [first.id, second.id, third.id]
    assert [line["status"] for line in listed] == ["running", "queued", "queued"]
    assert [line["position"] for line in listed] == [None, 1, 2]
    assert [line["where"] for line in listed] == ["slack/C0001", "discord/9001", "web"]
    assert [line["who"] for line in listed] == ["U0001", "4242", "203.0.113.9"]
    assert listed[0]["worker"] == "gpu-host:77"
    assert all(0 <= line["age_seconds"] < 60 for line in listed)

    code, output = jobs()
    assert code == 0
    header, *rows = output.splitlines()
    assert header.split()[:6] == ["ID", "STATUS", "POS", "AGE", "WHO", "WHERE"]
    assert rows[0].startswith(first.id) and "running 1/3" in rows[0]
    assert "slack/C0001" in rows[0] and "a lighthouse at dusk" in rows[0]
    assert rows[2].split()[:3] == [third.id, "queued", "2"]


def test_cancel_a_queued_and_a_running_job_of_anyone(settings: Settings) -> None:
    queue = make_queue(settings)
    running = queue.submit(job("slack", "U0001", "C0001", steps=3)).job
    waiting = queue.submit(job("discord", "4242", "9001")).job
    assert [j.id for j in queue.claim("default", "gpu-host:77", "ticket-1")] == [running.id]

    code, output = jobs("cancel", waiting.id)
    assert code == 0 and f"cancelled {waiting.id} before it started" in output
    assert queue.jobs.get(waiting.id).status is JobStatus.cancelled
    code, output = jobs("cancel", running.id)
    assert code == 0 and "gpu-host:77 stops it at the next step" in output
    assert queue.cancel_requested(running.id)

    code, output = jobs("--json")
    assert [line["id"] for line in json.loads(output)["jobs"]] == [running.id]
    code, output = jobs("cancel", waiting.id)
    assert code == 1 and "already finished (cancelled)" in output


def test_unknown_id_and_an_empty_queue(settings: Settings, tmp_path: Path,
                                       imagine_env: dict[str, str]) -> None:
    code, output = jobs("cancel", "0123456789abcdef01234567")
    assert code == 1
    assert "No job 0123456789abcdef01234567: it never existed or its record expired." in output
    run = subprocess.run([sys.executable, "-m", "bots.cli", "jobs"], capture_output=True,
                         text=True, env={**os.environ, **imagine_env}, cwd=tmp_path,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "no jobs waiting or running"
