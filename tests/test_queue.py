"""The job queue with a real Redis and real `imagine worker` processes on the tiny model."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from generator.png import read_parameters
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.errors import QueueFullError
from tasks.local.embedded_redis import EmbeddedRedis, free_port
from tasks.worker.celery_app import create_celery
from tests.fakes.webhook import webhook_receiver
from tests.fixtures_redis import Process, wait_for

# The local webhook receivers are on 127.0.0.1, which the outbound rules refuse unless opened.
LOCAL_WEBHOOKS = {"IMAGINE_OUTBOUND_ALLOW": "127.0.0.1"}


def make_queue(settings: Settings) -> JobQueue:
    return JobQueue(settings, redis_client(settings), create_celery(settings))


def make_job(user: str = "alice", platform: str = "api", extra: dict[str, str] | None = None,
             **request: object) -> Job:
    fields = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2,
              "seed": 7, **request}
    return Job(requester=Requester(platform=platform, user=user, extra=extra or {}),
               request=ImageRequest(**fields))  # type: ignore[arg-type]


def wait_status(queue: JobQueue, job_id: str, *statuses: JobStatus,
                timeout: float = 60.0) -> Job:
    def reached() -> Job | None:
        job = queue.jobs.get(job_id)
        return job if job.status in statuses else None

    return wait_for(reached, timeout, message=f"job {job_id} to be {statuses}")


SLOW = {"width": 256, "height": 256, "num_inference_steps": 40}


def test_submitted_job_is_drawn_stored_and_recorded(settings: Settings,
                                                    start_worker: Callable[..., Process]) -> None:
    start_worker("generate")
    queue = make_queue(settings)
    submitted = queue.submit(make_job(num_images=2))
    assert submitted.position == 1 and submitted.eta_seconds > 0

    job = wait_status(queue, submitted.job_id, JobStatus.done, JobStatus.failed)
    assert job.status is JobStatus.done, job.error
    assert job.seeds == [7, 8] and len(job.images) == 2
    assert job.started_at and job.finished_at and job.finished_at >= job.started_at
    assert job.attempts == 1 and job.error is None and job.worker
    storage = Storage(settings.images_dir)
    for name, seed in zip(job.images, job.seeds, strict=True):
        assert f"Seed: {seed}" in (read_parameters(storage.read(name)) or "")
    assert queue.position(job.id) is None and queue.running_count() == 0


def test_positions_follow_submission_order_and_close_up(settings: Settings) -> None:
    queue = make_queue(settings)  # no worker: everything stays queued
    submitted = [queue.submit(make_job(user=f"user{i}")) for i in range(5)]
    assert [s.position for s in submitted] == [1, 2, 3, 4, 5]
    assert submitted[4].eta_seconds > submitted[0].eta_seconds

    queue.cancel(submitted[1].job_id)
    assert [queue.position(s.job_id) for s in submitted] == [1, None, 2, 3, 4]


def test_queue_full_and_per_user_limits(settings: Settings) -> None:
    queue = make_queue(settings.model_copy(update={"max_queue": 3, "max_jobs_per_user": 2}))
    queue.submit(make_job(user="alice"))
    queue.submit(make_job(user="alice"))
    with pytest.raises(QueueFullError, match="You already have 2 unfinished jobs"):
        queue.submit(make_job(user="alice"))
    queue.submit(make_job(user="bob"))
    with pytest.raises(QueueFullError, match=r"The queue is full \(3 jobs waiting\); try again in ~"):
        queue.submit(make_job(user="carol"))
    assert queue.queued_count() == 3


def test_cancelled_queued_job_never_runs(settings: Settings,
                                         start_worker: Callable[..., Process]) -> None:
    queue = make_queue(settings)
    doomed = queue.submit(make_job(seed=1))
    kept = queue.submit(make_job(seed=2, user="bob"))
    assert queue.cancel(doomed.job_id).status is JobStatus.cancelled

    start_worker("generate")
    assert wait_status(queue, kept.job_id, JobStatus.done).images
    doomed_job = queue.jobs.get(doomed.job_id)
    assert doomed_job.status is JobStatus.cancelled
    assert doomed_job.started_at is None and not doomed_job.images


def test_running_job_is_interrupted(settings: Settings,
                                    start_worker: Callable[..., Process]) -> None:
    start_worker("generate")
    queue = make_queue(settings)
    submitted = queue.submit(make_job(**SLOW))
    wait_for(lambda: queue.jobs.get(submitted.job_id).step >= 1, 60, message="first step")
    queue.cancel(submitted.job_id)
    job = wait_status(queue, submitted.job_id, JobStatus.cancelled, JobStatus.done)
    assert job.status is JobStatus.cancelled and not job.images
    assert job.step < job.total_steps


def test_progress_events_can_be_watched(settings: Settings,
                                        start_worker: Callable[..., Process]) -> None:
    start_worker("generate")
    queue = make_queue(settings)
    submitted = queue.submit(make_job(num_inference_steps=6))
    events = list(queue.watch(submitted.job_id, timeout=60))
    assert events[-1]["status"] == "done" and events[-1]["images"]
    steps = [e["step"] for e in events if e["status"] == "running" and e.get("step")]
    assert steps == sorted(steps) and steps[-1] == 6


def test_job_survives_sigkill_of_the_process_drawing_it(
        settings: Settings, start_worker: Callable[..., Process]) -> None:
    """As the out-of-memory killer would: the child dies, the parent forks a new one."""
    start_worker("generate")
    queue = make_queue(settings)
    with webhook_receiver() as hook:
        submitted = queue.submit(make_job(platform="webhook", extra={"url": hook.url}, **SLOW))
        job = wait_for(lambda: (j := queue.jobs.get(submitted.job_id)).step >= 1 and j, 60,
                       message="generation to start")
        drawing_pid = int(job.worker.rsplit(":", 1)[1])
        import os
        os.kill(drawing_pid, signal.SIGKILL)

        job = wait_status(queue, submitted.job_id, JobStatus.done, JobStatus.failed, timeout=90)
        assert job.status is JobStatus.done and job.attempts == 2
        assert int(job.worker.rsplit(":", 1)[1]) != drawing_pid
        # No deliver worker yet: the result is waiting in the deliver queue. Start two.
        start_worker("deliver", env=LOCAL_WEBHOOKS)
        start_worker("deliver", env=LOCAL_WEBHOOKS)
        wait_for(lambda: hook.accepted("result"), 30, message="delivery")
        time.sleep(1.0)
        results = hook.accepted("result")
        assert len(results) == 1 and results[0]["job"]["id"] == job.id
        assert [i["seed"] for i in results[0]["images"]] == [7]


def test_job_of_a_lost_worker_host_is_picked_up_after_the_visibility_timeout(
        settings: Settings, start_worker: Callable[..., Process]) -> None:
    first = start_worker("generate")
    queue = make_queue(settings)
    submitted = queue.submit(make_job(**SLOW))
    wait_for(lambda: queue.jobs.get(submitted.job_id).step >= 1, 60, message="generation start")
    first.kill_group()  # main process and child at once: nobody requeues the message

    start_worker("generate")
    # IMAGINE_VISIBILITY_TIMEOUT=3 in tests; production default is job_timeout + 60 s.
    job = wait_status(queue, submitted.job_id, JobStatus.done, JobStatus.failed, timeout=90)
    assert job.status is JobStatus.done and job.attempts == 2


def test_queued_jobs_survive_a_redis_restart(tmp_path: Path, settings: Settings,
                                             start_worker: Callable[..., Process]) -> None:
    server = EmbeddedRedis(tmp_path / "persistent-redis", port=free_port(), appendonly=True)
    server.start()
    try:
        own = settings.model_copy(update={"redis_url": server.url})
        queue = make_queue(own)
        ids = [queue.submit(make_job(user=f"u{i}", seed=i)).job_id for i in range(3)]
        time.sleep(1.2)  # appendfsync everysec
        server.stop()
        server.start()
        assert [make_queue(own).position(i) for i in ids] == [1, 2, 3]

        start_worker("generate", env={"IMAGINE_REDIS_URL": server.url})
        queue = make_queue(own)
        for job_id in ids:
            assert wait_status(queue, job_id, JobStatus.done, JobStatus.failed).status is JobStatus.done
    finally:
        server.stop()


def test_rate_limited_delivery_is_retried_and_delivered_once(
        settings: Settings, start_worker: Callable[..., Process]) -> None:
    start_worker("generate")
    start_worker("deliver", env=LOCAL_WEBHOOKS)
    queue = make_queue(settings)
    with webhook_receiver(script=[429, 429]) as hook:
        submitted = queue.submit(make_job(platform="webhook", extra={"url": hook.url}))
        wait_for(lambda: hook.accepted("result"), 60, message="delivery")
        time.sleep(1.0)
        attempts = hook.attempts("result")
        assert [a["status"] for a in attempts] == [429, 429, 200]
        assert len(hook.accepted("result")) == 1
        assert hook.accepted("result")[0]["job"]["id"] == submitted.job_id


def test_failed_generation_records_a_readable_error(settings: Settings,
                                                    start_worker: Callable[..., Process]) -> None:
    start_worker("generate")
    queue = make_queue(settings)
    submitted = queue.submit(make_job(model="missing"))
    job = wait_status(queue, submitted.job_id, JobStatus.failed, JobStatus.done)
    assert job.status is JobStatus.failed
    assert job.error and "Traceback" not in job.error and "missing" in job.error
