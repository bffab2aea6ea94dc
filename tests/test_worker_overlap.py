"""Finishing overlaps drawing, and a worker killed between the two loses and repeats nothing.

The finishing thread (PNG, storage, record, hand-off) works on one batch while the next one
draws; a SIGKILL while some jobs of a message are recorded and others still drawing must end
with every job done once and delivered once (real worker processes, a local webhook).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry
from tasks.core.jobs import Job, JobStatus
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.worker.batch_runner import BatchRunner
from tasks.worker.celery_app import create_celery
from tasks.worker.finisher import Finisher
from tasks.worker.runner import JobRunner
from tests.fakes.webhook import webhook_receiver
from tests.fixtures_redis import Process, wait_for
from tests.test_queue import LOCAL_WEBHOOKS, make_job, wait_status

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"width": 64, "height": 64, "num_inference_steps": 2}
SLOW = {"width": 128, "height": 128, "num_inference_steps": 30}


def make_queue(settings: Settings) -> JobQueue:
    return JobQueue(settings, redis_client(settings), create_celery(settings))


def test_the_next_batch_is_drawing_while_the_last_one_is_finished(
        settings: Settings, tiny_model_dir: object) -> None:
    from generator.engine import Engine

    # The tests' 3 s visibility timeout would stop the message claiming after 1 s.
    settings = settings.model_copy(update={"visibility_timeout": 120})
    queue = make_queue(settings)
    engine = Engine({"default": str(tiny_model_dir)}, device="cpu", torch_threads=1)
    runner = JobRunner(settings, queue, Storage(settings.images_dir), engine,
                       lambda *_: None, AdapterRegistry())
    batches = BatchRunner(runner, Finisher())
    # Different sizes: three batches of one, the first with four large images to finish.
    sizes = [(256, 4), (64, 1), (128, 1)]
    ids = [queue.submit(make_job(user=f"u{i}", width=size, height=size, num_images=n,
                                 num_inference_steps=1)).job_id
           for i, (size, n) in enumerate(sizes)]
    batches.run_ticket(ids[0], worker="overlap@host")
    jobs = [queue.jobs.get(i) for i in ids]
    assert all(j.status is JobStatus.done for j in jobs), [j.error for j in jobs]
    assert len(jobs[0].images) == 4
    # The second batch was claimed (started) before the first one was recorded done.
    assert jobs[1].started_at is not None and jobs[0].finished_at is not None
    assert jobs[1].started_at < jobs[0].finished_at, (jobs[1].started_at, jobs[0].finished_at)


def test_sigkill_between_drawing_and_finishing_loses_and_repeats_nothing(
        settings: Settings, start_worker: Callable[..., Process]) -> None:
    queue = make_queue(settings)
    with webhook_receiver() as hook:
        def job(user: str, **request: object) -> Job:
            return make_job(user=user, platform="webhook", extra={"url": hook.url}, **request)

        # Two batches under the first message: two fast jobs, then two slow ones.
        ids = [queue.submit(job("a", prompt="a red fox", **FAST)).job_id,
               queue.submit(job("b", prompt="a blue boat", **FAST)).job_id,
               queue.submit(job("c", prompt="a green hill", **SLOW)).job_id,
               queue.submit(job("d", prompt="a yellow lamp", **SLOW)).job_id]
        # A long visibility timeout: only the SIGKILL can hand the message out again.
        start_worker("generate", env={"IMAGINE_VISIBILITY_TIMEOUT": "120"})

        def split() -> list[Job] | None:
            jobs = [queue.jobs.get(i) for i in ids]
            done = [j for j in jobs if j.status is JobStatus.done]
            running = [j for j in jobs if j.status is JobStatus.running]
            return jobs if done and running else None

        before = wait_for(split, 60, interval=0.01, message="some jobs done, others drawing")
        holder = next(j.worker for j in before if j.status is JobStatus.running)
        assert holder is not None
        os.kill(int(holder.rsplit(":", 1)[1]), signal.SIGKILL)
        done_before = {j.id for j in before if j.status is JobStatus.done}

        jobs = [wait_status(queue, i, JobStatus.done, JobStatus.failed, timeout=120)
                for i in ids]
        assert all(j.status is JobStatus.done for j in jobs), [j.error for j in jobs]
        for finished in jobs:
            assert finished.attempts == (1 if finished.id in done_before else 2), finished
        assert queue.running_count() == 0

        start_worker("deliver", env=LOCAL_WEBHOOKS)
        start_worker("deliver", env=LOCAL_WEBHOOKS)
        wait_for(lambda: len(hook.accepted("result")) >= len(ids), 60, message="deliveries")
        time.sleep(1.5)  # any second delivery would arrive by now
        delivered = sorted(r["job"]["id"] for r in hook.accepted("result"))
        assert delivered == sorted(ids)
