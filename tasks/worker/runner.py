"""One job on a generate worker: its callbacks, its outcome, storage, hand-off.

The batch runner (tasks.worker.batch_runner) draws claimed batches with each member's
callbacks from `member(job)` and records each outcome with `settle`, on the finishing
thread. `JobRunner.run(job_id, worker)` draws one job alone (the CLI, benches, tests): a job
that already finished is not drawn again, a job that keeps killing its worker is failed
after a few attempts instead of looping forever.

A job never stays "running" because of a failure after the pipeline ran: images that cannot
be stored fail the job with a message, and recording the outcome outlasts a Redis restart
(retried for RECORD_RETRY_SECONDS). Progress and cancel checks skip a beat while Redis is
away instead of failing the drawing. The job records which worker draws it (its Celery
node name and the pid), which is what the reaper checks against heartbeats.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from kombu.exceptions import OperationalError

from generator.batching import BatchMember, BatchOutcome
from generator.errors import GenerationCancelled
from settings import Settings
from settings.errors import ImagineError
from settings.i18n import _, use_locale
from tasks.core import delivery_watch, metrics
from tasks.core.delivery import AdapterRegistry, claim_progress_slot
from tasks.core.jobs import EXTRA_LOCALE, Job, JobStatus
from tasks.core.previews import PreviewStore, encode_preview
from tasks.core.queue import JobQueue
from tasks.core.storage import ImageStore
from tasks.names import DELIVER_PROGRESS_TASK, DELIVER_TASK
from tasks.policy import safety
from tasks.policy.gate import outcome_entry
from tasks.worker.text_prep import TextPrep, label_images, prepare_job

if TYPE_CHECKING:
    from PIL.Image import Image

    from generator.engine import Engine

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
CANCEL_CHECK_SECONDS = 0.2
# How long recording a finished job keeps trying while Redis is unreachable.
RECORD_RETRY_SECONDS = 120.0
# Redis (or the broker on it) restarting or unreachable: worth waiting for.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError)

T = TypeVar("T")

Dispatch = Callable[[str, str, dict[str, Any]], None]  # (task name, job id, options)


class JobRunner:
    def __init__(self, settings: Settings, queue: JobQueue, storage: ImageStore,
                 engine: Engine, dispatch: Dispatch, adapters: AdapterRegistry) -> None:
        self.settings = settings
        self.queue = queue
        self.storage = storage
        self.engine = engine
        self.dispatch = dispatch
        # Only asked whether a platform wants deliveries; nothing is built from it here.
        self.adapters = adapters
        # The latest preview of each running job, kept a little longer than a job may run.
        self.previews = PreviewStore(queue.redis, settings.job_timeout + 60)
        # Prompts translated and enhanced before drawing (#16), on the engine's device.
        self.text = TextPrep(settings, queue.redis, lambda: engine.device)

    def run(self, job_id: str, worker: str | None = None) -> None:
        """Draw the job; `worker` is the Celery node name, whose heartbeat vouches for it."""
        job = self.queue.jobs.find(job_id)
        if job is None:
            log.warning("job %s has no record (expired?); skipping", job_id)
            return
        # The job's messages (errors, notes) in its requester's language.
        with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
            self._run(job, worker)

    def _run(self, job: Job, worker: str | None) -> None:
        job_id = job.id
        if job.status.finished:
            # Redelivered after it finished but before the ack: only make sure it is delivered.
            self.hand_off(job)
            return
        drawer = drawer_name(worker)
        job = self.queue.jobs.update(job_id, lambda j: _start(j, drawer))
        if job.status is not JobStatus.running:
            return  # cancelled meanwhile
        self.queue.mark_started(job_id)
        self.queue.publish(job)
        if job.attempts > MAX_ATTEMPTS:
            self.finish(job, JobStatus.failed, error=too_many_attempts())
            return
        prepared = prepare_job(self, self.text, job)
        if prepared is None:
            return  # its translated or enhanced prompt was refused
        job = prepared
        began = time.perf_counter()
        member = self.member(job)
        try:
            images = self.engine.generate(
                job.request, on_progress=member.on_progress, should_cancel=member.should_cancel,
                load_image=self.load_image, on_status=member.on_status)
        except Exception as exc:  # every failure becomes the job's outcome
            self.settle(job, BatchOutcome(error=exc), 0.0)
        else:
            self.settle(job, BatchOutcome(images=images), time.perf_counter() - began)
        finally:
            self.record_model_loads()

    def member(self, job: Job) -> BatchMember:
        """The job as a member of a pipeline call: its request and its own callbacks."""
        return BatchMember(job.request, on_progress=self._progress_reporter(job),
                           should_cancel=self._cancel_checker(job.id),
                           on_status=self._status_reporter(job))

    def settle(self, job: Job, outcome: BatchOutcome, seconds: float) -> None:
        """Store and record what drawing `job` gave, and hand it off; never raises for a
        failure of the drawing itself (that is the job's outcome). Its messages are in the
        requester's language."""
        with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
            self._settle(job, outcome, seconds)

    def _settle(self, job: Job, outcome: BatchOutcome, seconds: float) -> None:
        exc = outcome.error
        if exc is None:
            self._store(job, outcome.images or [], seconds)
        elif isinstance(exc, GenerationCancelled):
            self.finish(job, JobStatus.cancelled, error=_("Cancelled while drawing."))
        elif isinstance(exc, ImagineError):
            self.finish(job, JobStatus.failed, error=exc.message)
        else:  # what the user sees must not be a stack trace
            log.error("job %s failed", job.id, exc_info=exc)
            if type(exc).__name__ == "SoftTimeLimitExceeded":
                error = _("Drawing took longer than the limit of {seconds} s; try fewer steps "
                          "or a smaller size.").format(seconds=self.settings.job_timeout)
            else:
                error = _("Generation failed ({error}); the operator can see details in the "
                          "worker log.").format(error=type(exc).__name__)
            self.finish(job, JobStatus.failed, error=error)

    def _store(self, job: Job, images: list[Any], seconds: float) -> None:
        label_images(job, images)  # the prompt as written beside the one drawn (#16)
        try:
            names = [self.storage.put(image.png) for image in images]
            # Image safety before the job counts as done (blurred copies stored too).
            review = safety.review(self.settings, job, images, self.engine.safety,
                                   self.storage.put)
        except safety.SafetyCheckFailed as exc:
            self.finish(job, JobStatus.failed, error=exc.message)
            return
        except OSError as exc:  # disk full, read-only, a folder gone: say so, free the slot
            log.exception("job %s: storing its images failed", job.id)
            reason = exc.strerror or type(exc).__name__
            self.finish(job, JobStatus.failed, error=_(
                "The images were drawn but could not be saved ({reason}); the operator must "
                "check the image storage. Try again later.").format(reason=reason))
            return
        _outlasting_outages(lambda: safety.record(self.settings, self.queue.redis, job,
                                                  review.verdicts))
        # Notes made at submit (about the user's image) first, then the generator's, then
        # image safety's.
        notes = list(dict.fromkeys([*job.notes, *(n for image in images for n in image.notes),
                                    *review.notes]))
        self.finish(job, JobStatus.done, images=names, seeds=[i.seed for i in images],
                     image_sizes=[(i.width, i.height) for i in images], notes=notes,
                     generation_seconds=seconds, verdicts=review.verdicts)

    def finish(self, job: Job, status: JobStatus, **fields: Any) -> None:
        def change(current: Job) -> Job:
            return current.model_copy(update={"status": status, "finished_at": time.time(),
                                              **fields})

        finished = _outlasting_outages(lambda: self.queue.jobs.update(job.id, change))
        _outlasting_outages(lambda: self.queue.mark_finished(finished))
        _outlasting_outages(lambda: self.queue.policy.audit.record(outcome_entry(finished)))
        self.hand_off(finished)

    def hand_off(self, job: Job) -> None:
        if self.adapters.has_adapter(job.requester.platform):
            # Noted first: a worker that dies before sending leaves it to the reaper.
            _outlasting_outages(lambda: delivery_watch.expect(self.queue.redis, job.id))
            _outlasting_outages(lambda: self.dispatch(DELIVER_TASK, job.id, {}))

    def _progress_reporter(self, job: Job) -> Callable[[int, int, Image | None], None]:
        interval = self.settings.progress_interval
        last = [0.0]
        wants_progress = self.adapters.has_adapter(job.requester.platform)
        unrecorded: list[int] = []  # steps lost to a Redis outage: warned about once

        def report(step: int, total: int, preview: Image | None = None) -> None:
            now = time.monotonic()
            # The engine paces previews itself (IMAGINE_PREVIEW_INTERVAL): none is dropped.
            if preview is None and now - last[0] < interval and step < total:
                return
            last[0] = now
            try:
                fields: dict[str, Any] = {"step": step, "total_steps": total, "phase": None}
                if preview is not None:
                    self.previews.put(job.id, encode_preview(preview))
                updated = self.queue.jobs.update(job.id, lambda j: j.model_copy(update={
                    **fields, "preview": j.preview + (preview is not None)}))
                self.queue.publish(updated)
                if wants_progress and claim_progress_slot(self.queue.redis, job.id, interval):
                    self.dispatch(DELIVER_PROGRESS_TASK, job.id, {})
            except UNREACHABLE as exc:  # progress is news, not state: keep drawing
                log.log(logging.DEBUG if unrecorded else logging.WARNING,
                        "job %s: progress not recorded (%s)", job.id, exc)
                unrecorded.append(step)

        return report

    def _status_reporter(self, job: Job) -> Callable[[str], None]:
        """The engine's news before drawing (a model loading) as the job's phase, shown at once:
        a load takes seconds to minutes, and without it the user sees a job stuck at step 0."""
        wants_progress = self.adapters.has_adapter(job.requester.platform)

        def report(phase: str) -> None:
            try:
                updated = self.queue.jobs.update(job.id, lambda j: j.model_copy(
                    update={"phase": phase}))
                self.queue.publish(updated)
                # A progress update already waiting reads the record, phase included.
                interval = self.settings.progress_interval
                if wants_progress and claim_progress_slot(self.queue.redis, job.id, interval):
                    self.dispatch(DELIVER_PROGRESS_TASK, job.id, {})
            except UNREACHABLE as exc:
                log.warning("job %s: phase %r not recorded (%s)", job.id, phase, exc)

        return report

    def record_model_loads(self) -> None:
        # Loads at warm-up are recorded with the first job's.
        try:
            for load in self.engine.take_model_loads():
                metrics.record_model_load(self.queue.redis, load.model, load.origin, load.seconds)
        except UNREACHABLE as exc:
            log.warning("model load times not recorded (%s)", exc)

    def _cancel_checker(self, job_id: str) -> Callable[[], bool]:
        last = [0.0]

        def should_cancel() -> bool:
            now = time.monotonic()
            if now - last[0] < CANCEL_CHECK_SECONDS:
                return False
            last[0] = now
            try:
                return self.queue.cancel_requested(job_id)
            except UNREACHABLE:
                return False  # asked again at the next step

        return should_cancel

    def load_image(self, name: str) -> Image:
        from PIL import Image  # noqa: PLC0415

        if not self.storage.exists(name):
            raise ImagineError(_("The source image {name} is no longer in storage.").format(
                name=name))
        with Image.open(io.BytesIO(self.storage.read(name))) as image:
            return image.convert("RGB")


def _start(job: Job, worker: str) -> Job | None:
    if job.status not in (JobStatus.queued, JobStatus.running):
        return None
    return job.model_copy(update={"status": JobStatus.running, "started_at": time.time(),
                                  "attempts": job.attempts + 1, "step": 0, "worker": worker,
                                  "phase": None})


def drawer_name(worker: str | None) -> str:
    """What a job records as its `worker`: the Celery node name (whose heartbeat vouches for
    it) and this process's pid (which tells a dead child of a live node)."""
    return f"{worker or socket.gethostname()}:{os.getpid()}"


def too_many_attempts() -> str:
    return _("The worker stopped {count} times while drawing this job (out of memory?). Try a "
             "smaller size or fewer images.").format(count=MAX_ATTEMPTS)


def _outlasting_outages(action: Callable[[], T]) -> T:
    """`action()`, tried again while Redis is unreachable, for up to RECORD_RETRY_SECONDS."""
    deadline = time.monotonic() + RECORD_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return action()
        except UNREACHABLE as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unreachable (%s); trying again in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
