"""Running one job on a generate worker: status, progress, cancel, storage, hand-off.

The Celery task only calls `JobRunner.run(job_id)`; everything a redelivery must get right
lives here: a job that already finished is not drawn again, a job that keeps killing its
worker is failed after a few attempts instead of looping forever.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from generator.errors import GenerationCancelled
from settings import Settings
from settings.errors import ImagineError
from tasks.core.delivery import AdapterRegistry, claim_progress_slot
from tasks.core.jobs import Job, JobStatus
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.names import DELIVER_PROGRESS_TASK, DELIVER_TASK

if TYPE_CHECKING:
    from PIL.Image import Image

    from generator.engine import Engine

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
CANCEL_CHECK_SECONDS = 0.2

Dispatch = Callable[[str, str, dict[str, Any]], None]  # (task name, job id, options)


class JobRunner:
    def __init__(self, settings: Settings, queue: JobQueue, storage: Storage,
                 engine: Engine, dispatch: Dispatch, adapters: AdapterRegistry) -> None:
        self.settings = settings
        self.queue = queue
        self.storage = storage
        self.engine = engine
        self.dispatch = dispatch
        # Only asked whether a platform wants deliveries; nothing is built from it here.
        self.adapters = adapters

    def run(self, job_id: str) -> None:
        job = self.queue.jobs.find(job_id)
        if job is None:
            log.warning("job %s has no record (expired?); skipping", job_id)
            return
        if job.status.finished:
            # Redelivered after it finished but before the ack: only make sure it is delivered.
            self._hand_off(job)
            return
        job = self.queue.jobs.update(job_id, _start)
        if job.status is not JobStatus.running:
            return  # cancelled meanwhile
        self.queue.mark_started(job_id)
        self.queue.publish(job)
        if job.attempts > MAX_ATTEMPTS:
            self._finish(job, JobStatus.failed, error=(
                f"The worker stopped {MAX_ATTEMPTS} times while drawing this job (out of "
                "memory?). Try a smaller size or fewer images."))
            return
        began = time.perf_counter()
        try:
            images = self.engine.generate(
                job.request,
                on_progress=self._progress_reporter(job),
                should_cancel=self._cancel_checker(job.id),
                load_image=self._load_image,
            )
        except GenerationCancelled:
            self._finish(job, JobStatus.cancelled, error="Cancelled while drawing.")
        except ImagineError as exc:
            self._finish(job, JobStatus.failed, error=exc.message)
        except Exception as exc:  # what the user sees must not be a stack trace
            log.exception("job %s failed", job_id)
            if type(exc).__name__ == "SoftTimeLimitExceeded":
                error = (f"Drawing took longer than the limit of {self.settings.job_timeout} s; "
                         "try fewer steps or a smaller size.")
            else:
                error = (f"Generation failed ({type(exc).__name__}); the operator can see "
                         "details in the worker log.")
            self._finish(job, JobStatus.failed, error=error)
        else:
            names = [self.storage.put(image.png) for image in images]
            self._finish(job, JobStatus.done, images=names, seeds=[i.seed for i in images],
                         generation_seconds=time.perf_counter() - began)

    def _finish(self, job: Job, status: JobStatus, **fields: Any) -> None:
        def change(current: Job) -> Job:
            return current.model_copy(update={"status": status, "finished_at": time.time(),
                                              **fields})

        finished = self.queue.jobs.update(job.id, change)
        self.queue.mark_finished(finished)
        self._hand_off(finished)

    def _hand_off(self, job: Job) -> None:
        if self.adapters.has_adapter(job.requester.platform):
            self.dispatch(DELIVER_TASK, job.id, {})

    def _progress_reporter(self, job: Job) -> Callable[[int, int, Image | None], None]:
        interval = self.settings.progress_interval
        last = [0.0]
        wants_progress = self.adapters.has_adapter(job.requester.platform)

        def report(step: int, total: int, preview: Image | None = None) -> None:
            now = time.monotonic()
            if now - last[0] < interval and step < total:
                return
            last[0] = now
            updated = self.queue.jobs.update(
                job.id, lambda j: j.model_copy(update={"step": step, "total_steps": total}))
            self.queue.publish(updated)
            if wants_progress and claim_progress_slot(self.queue.redis, job.id, interval):
                self.dispatch(DELIVER_PROGRESS_TASK, job.id, {})

        return report

    def _cancel_checker(self, job_id: str) -> Callable[[], bool]:
        last = [0.0]

        def should_cancel() -> bool:
            now = time.monotonic()
            if now - last[0] < CANCEL_CHECK_SECONDS:
                return False
            last[0] = now
            return self.queue.cancel_requested(job_id)

        return should_cancel

    def _load_image(self, name: str) -> Image:
        from PIL import Image  # noqa: PLC0415

        if not self.storage.exists(name):
            raise ImagineError(f"The source image {name} is no longer in storage.")
        with Image.open(io.BytesIO(self.storage.read(name))) as image:
            return image.convert("RGB")


def _start(job: Job) -> Job | None:
    if job.status not in (JobStatus.queued, JobStatus.running):
        return None
    return job.model_copy(update={"status": JobStatus.running, "started_at": time.time(),
                                  "attempts": job.attempts + 1, "step": 0,
                                  "worker": f"{socket.gethostname()}:{os.getpid()}"})
