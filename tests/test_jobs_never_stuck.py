"""Jobs never stay stuck: a failure after the pipeline ran fails the job and frees the user's
slot; the reaper puts back in line (or fails) jobs whose worker's heartbeat stopped.

One real generate worker on the tiny model, a real Redis; the storage folder is broken for
real (a file where the folder should be), and a "dead worker" is a job recorded as running
by a worker name that never beats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.names import ACTIVE_KEY, RUNNING_KEY
from tasks.worker.celery_app import create_celery
from tests.fixtures_redis import Process, wait_for


def new_job(user: str, seed: int, **fields: object) -> Job:
    request = ImageRequest(prompt="a red fox", width=64, height=64, num_inference_steps=2,
                           seed=seed)
    return Job(requester=Requester(platform="api", user=user), request=request, **fields)  # type: ignore[arg-type]


def finished(queue: JobQueue, job_id: str, timeout: float = 60.0) -> Job:
    return wait_for(lambda: (job := queue.jobs.get(job_id)).status.finished and job, timeout,
                    message=f"job {job_id} to finish")


def test_storage_failure_fails_the_job_frees_the_slot_and_the_reaper_requeues(
        settings: Settings, tmp_path: Path, start_worker: Callable[..., Process]) -> None:
    storage = settings.images_dir
    assert storage == tmp_path / "images"
    storage.write_text("a file where the image folder should be")
    start_worker("generate")
    queue = JobQueue(settings.model_copy(update={"max_jobs_per_user": 1}),
                     redis_client(settings), create_celery(settings))

    # 1. Drawn, but the PNGs cannot be written: failed, with a message a person can read.
    first = queue.submit(new_job("bob", 7)).job
    job = finished(queue, first.id)
    assert job.status is JobStatus.failed, job
    assert job.error is not None and "could not be saved (Not a directory)" in job.error
    assert "Traceback" not in job.error and str(storage) not in job.error
    # The slot is free: bob (limit 1) may submit again, and with storage back it is drawn.
    assert queue.running_count() == 0
    assert not queue.redis.smembers(ACTIVE_KEY.format("api:bob"))
    storage.unlink()
    second = queue.submit(new_job("bob", 8)).job
    assert finished(queue, second.id).status is JobStatus.done

    # 2. Jobs recorded as running by a worker whose heartbeat never comes (lost with its
    # host, its message gone): the live worker's reaper requeues one, fails the other.
    now = time.time()
    lost = new_job("carol", 9, status=JobStatus.running, attempts=1, started_at=now,
                   worker="generate-1@gone-host:4242")
    doomed = new_job("dave", 10, status=JobStatus.running, attempts=3, started_at=now,
                     worker="generate-2@gone-host:4343")
    for ghost in (lost, doomed):
        queue.jobs.save(ghost)
        queue.redis.sadd(ACTIVE_KEY.format(ghost.requester.user_key), ghost.id)
        queue.mark_started(ghost.id)
    redrawn = finished(queue, lost.id, timeout=30)
    assert redrawn.status is JobStatus.done and redrawn.attempts == 2, redrawn
    assert redrawn.worker and not redrawn.worker.startswith("generate-1@gone-host")
    failed = finished(queue, doomed.id, timeout=30)
    assert failed.status is JobStatus.failed and "stopped 3 times" in (failed.error or "")
    assert not queue.redis.smembers(RUNNING_KEY)
    for user in ("carol", "dave"):
        assert not queue.redis.smembers(ACTIVE_KEY.format(f"api:{user}"))
