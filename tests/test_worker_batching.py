"""Generate messages as tickets: batches of compatible jobs, cancelled members, previews,
IMAGINE_MAX_BATCH=1, and a message delivered again after its holder died.

Real Redis, the real tiny model, real `imagine worker` processes where the Celery side
matters; the recovery and reaper cases run the BatchRunner in this process, with the
hand-offs it dispatches recorded instead of sent (no deliver worker needed to count them).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generator.engine import Engine
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry
from tasks.core.jobs import Job, JobStatus
from tasks.core.previews import PreviewStore
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.names import DELIVER_TASK, RUNNING_KEY, WORKER_BEATS_KEY
from tasks.worker.batch_runner import BatchRunner
from tasks.worker.celery_app import create_celery
from tasks.worker.finisher import Finisher
from tasks.worker.reaper import Reaper
from tasks.worker.runner import JobRunner
from tests.fixtures_redis import Process, wait_for
from tests.test_queue import make_job, wait_status

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["a red fox", "a blue boat", "a green hill", "a yellow lamp"]


def make_queue(settings: Settings) -> JobQueue:
    return JobQueue(settings, redis_client(settings), create_celery(settings))


def pixels(storage: Storage, name: str) -> np.ndarray:
    with Image.open(io.BytesIO(storage.read(name))) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Any) -> Engine:
    return Engine({"default": str(tiny_model_dir)}, device="cpu", torch_threads=1)


class Worker:
    """The generate worker's own objects in this process; `sent` holds what it dispatched."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.queue = make_queue(settings)
        self.storage = Storage(settings.images_dir)
        self.sent: list[tuple[str, str]] = []
        self.runner = JobRunner(settings, self.queue, self.storage, engine, self._dispatch,
                                AdapterRegistry({"webhook": lambda _: None}))  # type: ignore[dict-item, return-value]
        self.batches = BatchRunner(self.runner, Finisher())

    def _dispatch(self, task: str, job_id: str, options: dict[str, object]) -> None:
        self.sent.append((task, job_id))

    def deliveries(self, job_id: str) -> int:
        return self.sent.count((DELIVER_TASK, job_id))


@pytest.fixture
def worker(settings: Settings, engine: Engine) -> Iterator[Worker]:
    yield Worker(settings, engine)


def webhook_job(user: str, **request: object) -> Job:
    return make_job(user=user, platform="webhook", extra={"url": "http://127.0.0.1:9/hook"},
                    **request)


# --- real worker processes -------------------------------------------------------------

def test_compatible_jobs_waiting_are_drawn_as_one_batch_like_solo_draws(
        settings: Settings, start_worker: Callable[..., Process], worker: Worker) -> None:
    queue = worker.queue
    ids = [queue.submit(make_job(user=f"u{i}", prompt=p, seed=10 + i)).job_id
           for i, p in enumerate(PROMPTS)]
    start_worker("generate")
    jobs = [wait_status(queue, i, JobStatus.done, JobStatus.failed, JobStatus.cancelled)
            for i in ids]
    assert all(j.status is JobStatus.done for j in jobs), [j.error for j in jobs]
    assert {j.batch_size for j in jobs} == {4} and len({j.worker for j in jobs}) == 1
    assert all(j.attempts == 1 for j in jobs)

    for job in jobs:  # the same job drawn alone, in this process
        solo = queue.submit(make_job(user="solo", prompt=job.request.prompt,
                                     seed=job.request.seed))
        worker.runner.run(solo.job_id, worker="test")
        alone = queue.jobs.get(solo.job_id)
        assert alone.status is JobStatus.done and alone.batch_size == 1
        difference = np.abs(pixels(worker.storage, job.images[0])
                            - pixels(worker.storage, alone.images[0]))
        assert difference.mean() < 2.0, f"{job.request.prompt}: {difference.mean()}"


def test_a_member_cancelled_while_drawing_leaves_the_others_alone(
        settings: Settings, start_worker: Callable[..., Process]) -> None:
    queue = make_queue(settings)
    ids = [queue.submit(make_job(user=f"u{i}", prompt=p, width=128, height=128,
                                 num_inference_steps=40)).job_id
           for i, p in enumerate(PROMPTS[:3])]
    start_worker("generate")
    wait_for(lambda: all(queue.jobs.get(i).step >= 1 for i in ids), 60, message="drawing")
    queue.cancel(ids[1])
    jobs = [wait_status(queue, i, JobStatus.done, JobStatus.failed, JobStatus.cancelled)
            for i in ids]
    assert [j.status for j in jobs] == [JobStatus.done, JobStatus.cancelled, JobStatus.done]
    assert jobs[1].error == "Cancelled while drawing." and not jobs[1].images
    assert jobs[0].batch_size == 3 and len(jobs[0].images) == 1
    assert queue.running_count() == 0


def test_max_batch_1_draws_one_job_at_a_time(settings: Settings,
                                             start_worker: Callable[..., Process]) -> None:
    queue = make_queue(settings)
    ids = [queue.submit(make_job(user=f"u{i}", prompt=p)).job_id
           for i, p in enumerate(PROMPTS[:3])]
    start_worker("generate", env={"IMAGINE_MAX_BATCH": "1"})
    jobs = sorted((wait_status(queue, i, JobStatus.done, JobStatus.failed) for i in ids),
                  key=lambda j: j.started_at or 0.0)
    assert all(j.status is JobStatus.done and j.batch_size == 1 for j in jobs)
    assert [j.id for j in jobs] == ids  # fair order of three users: submit order
    assert len({j.worker for j in jobs}) == 1


def test_previews_are_stored_and_counted(settings: Settings, worker: Worker,
                                         engine: Engine) -> None:
    preview_engine = Engine({"default": engine.sources["default"]}, device="cpu",
                            torch_threads=1, preview_interval=0.01)
    runner = JobRunner(settings, worker.queue, worker.storage, preview_engine,
                       lambda *_: None, AdapterRegistry())
    job_id = worker.queue.submit(make_job(num_inference_steps=4, width=128, height=128)).job_id
    runner.run(job_id, worker="test")
    job = worker.queue.jobs.get(job_id)
    assert job.status is JobStatus.done and job.preview >= 1
    jpeg = PreviewStore(worker.queue.redis, 60).get(job_id)
    assert jpeg is not None
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG" and max(image.size) <= 256


# --- a message delivered again (in this process) ----------------------------------------

def claim_all(queue: JobQueue, drawer: str, ticket: str) -> list[Job]:
    jobs = queue.claim("default", drawer, ticket)
    assert jobs, "nothing claimed"
    return jobs


def test_a_redelivered_message_draws_again_what_its_dead_holder_left(
        worker: Worker, settings: Settings) -> None:
    queue = worker.queue
    ids = [queue.submit(webhook_job(f"u{i}", prompt=p)).job_id for i, p in enumerate(PROMPTS[:3])]
    # A holder on a node that never beat (a host that vanished) claimed all three...
    claimed = claim_all(queue, "gone@host:4000000", ids[0])
    assert len(claimed) == 3 and {j.status for j in claimed} == {JobStatus.running}
    # ...and recorded the first before it died.
    worker.runner.finish(claimed[0], JobStatus.failed, error="recorded before the crash")
    worker.sent.clear()

    worker.batches.run_ticket(ids[0], worker="me@host", queue_name="generate")
    jobs = [queue.jobs.get(i) for i in ids]
    assert jobs[0].status is JobStatus.failed and jobs[0].attempts == 1  # not drawn again
    assert [j.status for j in jobs[1:]] == [JobStatus.done, JobStatus.done]
    assert all(j.attempts == 2 and j.worker and j.worker.startswith("me@host:") for j in jobs[1:])
    assert [worker.deliveries(i) for i in ids] == [1, 1, 1]
    assert queue.running_count() == 0

    # The same message once more (the broker's copy): everything is handed off, once more
    # each (delivery posts once), nothing drawn again.
    worker.sent.clear()
    worker.batches.run_ticket(ids[0], worker="me@host", queue_name="generate")
    assert [queue.jobs.get(i).attempts for i in ids] == [1, 2, 2]
    assert [worker.deliveries(i) for i in ids] == [1, 1, 1]


def test_jobs_of_a_live_holder_are_not_taken_and_attempts_are_bounded(
        worker: Worker, settings: Settings) -> None:
    queue = worker.queue
    live_id = queue.submit(make_job(user="a")).job_id
    claim_all(queue, f"me@host:{os.getpid()}", live_id)  # recorded as this very process
    # A job that already took down MAX_ATTEMPTS workers is failed, not drawn a fourth time.
    tired_id = queue.submit(make_job(user="b")).job_id
    claim_all(queue, "gone@host:4000000", tired_id)
    queue.jobs.update(tired_id, lambda j: j.model_copy(update={"attempts": 3}))
    other_holder = queue.submit(make_job(user="c")).job_id
    claim_all(queue, "other@host:1", other_holder)  # pid 1 lives; another node that beats
    queue.redis.zadd(WORKER_BEATS_KEY, {"other@host": time.time() + 60})

    worker.batches.run_ticket(tired_id, worker="me@host")
    tired = queue.jobs.get(tired_id)
    assert tired.status is JobStatus.failed and "stopped 3 times" in (tired.error or "")
    worker.batches.run_ticket(other_holder, worker="me@host")
    assert queue.jobs.get(other_holder).status is JobStatus.running  # its holder lives
    # A job recorded as drawn by this very process, which is not drawing it: drawn again.
    worker.batches.run_ticket(live_id, worker="me@host")
    assert queue.jobs.get(live_id).status is JobStatus.done


def test_the_reaper_leaves_a_job_another_worker_took_meanwhile(
        worker: Worker, settings: Settings) -> None:
    queue = worker.queue
    job_id = queue.submit(make_job()).job_id
    judged = claim_all(queue, "dead@host:4000000", job_id)[0]
    # Between the reaper's look and its requeue, a redelivered message re-took the job.
    queue.jobs.update(job_id, lambda j: j.model_copy(update={"worker": "alive@host:7"}))
    assert queue.requeue(job_id, worker=judged.worker).status is JobStatus.running
    assert queue.redis.sismember(RUNNING_KEY, job_id)
    reaper = Reaper(queue, lambda _: False, "test")
    queue.jobs.update(job_id, lambda j: j.model_copy(update={"worker": "dead@host:4000000"}))
    assert reaper.run_once() == [job_id]  # the dead holder's job does go back
    assert queue.jobs.get(job_id).status is JobStatus.queued
