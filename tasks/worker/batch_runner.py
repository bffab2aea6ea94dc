"""A generate message is a ticket: whoever holds it draws batches of waiting jobs.

The Celery message of job X does not mean "draw X": it means "a worker may draw now". The
holder takes batches of its model's waiting jobs in fair order (JobQueue.claim: the first
waiting job plus compatible ones close behind it), draws each batch in one pipeline call and
hands the results to the finishing thread while it claims and draws the next. It stops
claiming when nothing waits or when its time is running out, waits for the finishing thread
and returns, which acknowledges the message. X itself is drawn by whichever ticket claims it
first; its own message then finds it running or finished.

Every job claimed under a message is listed in TICKET_KEY(message) until the message is
acknowledged. A message delivered again means its holder died (a SIGKILL, a lost host): the
jobs of its list still running in a dead process are drawn again at once (MAX_ATTEMPTS
honoured), the finished ones are handed to delivery again (which posts each once), the
queued ones (requeued by the reaper) wait for their own message.

While an admin has paused the queue (tasks.policy.pause) a message claims nothing: it waits
a few seconds for a resume, then raises QueuePaused and the task puts it back in line (a
message acknowledged without claiming would leave a waiting job without one). Jobs already
drawing, or re-taken from a dead holder, finish; a pause seen between batches stops claiming.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence

from generator.batching import BatchOutcome, batch_key
from settings.i18n import use_locale
from tasks.core.jobs import EXTRA_LOCALE, Job, JobStatus
from tasks.core.queue import server_time
from tasks.names import RUNNING_KEY, TICKET_KEY, queue_model
from tasks.policy.pause import QueuePause
from tasks.worker.celery_app import retry_countdown, visibility_timeout
from tasks.worker.finisher import Finisher
from tasks.worker.runner import MAX_ATTEMPTS, JobRunner, drawer_name, too_many_attempts
from tasks.worker.text_prep import prepare_job

log = logging.getLogger(__name__)

# The share of the shorter of the soft time limit and the visibility timeout a message may
# spend claiming: the batch drawn last and the finishing fit in the rest.
CLAIM_SHARE = 1 / 3
# How long a message waits for a resume before going back in line, and how often it looks.
PAUSE_HOLD = 10.0
PAUSE_POLL = 0.5


class QueuePaused(Exception):  # noqa: N818 - a state, not an error of the message
    """An admin paused the queue: put this message (on `model`'s queue) back in line."""

    def __init__(self, model: str) -> None:
        super().__init__(f"the queue is paused; {model} jobs wait")
        self.model = model


class BatchRunner:
    def __init__(self, runner: JobRunner, finisher: Finisher) -> None:
        self.runner = runner
        self.queue = runner.queue
        self.settings = runner.settings
        self.finisher = finisher
        self.pause = QueuePause(self.queue.redis)

    def run_ticket(self, ticket: str, worker: str | None = None,
                   queue_name: str | None = None) -> None:
        """Hold the message of job `ticket` (from queue `queue_name`) as described above;
        `worker` is the Celery node name."""
        began = time.monotonic()
        drawer = drawer_name(worker)
        job = self.queue.jobs.find(ticket)
        if job is not None and job.status.finished:
            self.runner.hand_off(job)  # redelivered before the ack: make sure it is delivered
        model = job.request.model if job is not None else (
            queue_model(queue_name) if queue_name else None)
        try:
            for batch in self._recover(ticket, drawer, worker):
                self._draw(batch)
            if model is None:
                log.warning("message %s: no job record and no queue; nothing to claim", ticket)
                return
            if self._still_paused():
                raise QueuePaused(model)
            longest = 0.0
            while True:
                batch = self.queue.claim(model, drawer, ticket)
                if not batch:
                    break
                started = time.monotonic()
                self._draw(batch)
                longest = max(longest, time.monotonic() - started)
                if not self._time_for_another(time.monotonic() - began, longest):
                    break  # the next message of this queue goes on where this one stops
                if self.pause.current() is not None:
                    break  # it claimed jobs, so the messages of the waiting ones remain
        finally:
            self.finisher.drain()

    def _still_paused(self) -> bool:
        """Whether the queue is still paused after waiting up to PAUSE_HOLD s for a resume
        (less under a short visibility timeout: the message must go back in time)."""
        deadline = time.monotonic() + min(retry_countdown(self.settings, PAUSE_HOLD),
                                          self.settings.job_timeout * CLAIM_SHARE)
        while self.pause.current() is not None:
            if time.monotonic() >= deadline:
                return True
            time.sleep(PAUSE_POLL)
        return False

    def _time_for_another(self, elapsed: float, longest: float) -> bool:
        """Whether a message that has held the GPU `elapsed` s may claim another batch: it
        must be acknowledged before the soft time limit stops it (a batch started late would
        fail for time it did not take) and before the broker hands it to another worker."""
        limit = min(self.settings.job_timeout, visibility_timeout(self.settings))
        return elapsed <= limit * CLAIM_SHARE and elapsed + 2 * longest <= limit

    # --- drawing ------------------------------------------------------------------------

    def _draw(self, jobs: Sequence[Job]) -> None:
        """Draw the running `jobs` in one pipeline call; their results go to the finisher."""
        drawable = []
        for job in jobs:
            self.queue.publish(job)
            if job.attempts > MAX_ATTEMPTS:
                with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
                    error = too_many_attempts()
                self.runner.finish(job, JobStatus.failed, error=error)
                continue
            # Translated and enhanced first (#16): batch_key ignores prompts, so the batch holds.
            prepared = prepare_job(self.runner, self.runner.text, job)
            if prepared is not None:
                drawable.append(prepared)
        if not drawable:
            return
        began = time.perf_counter()
        try:
            # One pipeline call has one language for what it raises: the first member's (a
            # batch mixes languages rarely; each job's own messages are made in its own).
            with use_locale(drawable[0].requester.extra.get(EXTRA_LOCALE)):
                outcomes = self._generate(drawable)
        except Exception as exc:  # the whole call failed (a model that does not load, a limit)
            outcomes = [BatchOutcome(error=exc) for _ in drawable]
        finally:
            self.runner.record_model_loads()
        seconds = time.perf_counter() - began

        def finish() -> None:
            for job, outcome in zip(drawable, outcomes, strict=True):
                self.runner.settle(job, outcome, seconds)

        self.finisher.submit(finish)

    def _generate(self, jobs: Sequence[Job]) -> list[BatchOutcome]:
        # One member is drawn exactly as Engine.generate draws it (operations, ControlNet).
        members = [self.runner.member(job) for job in jobs]
        return list(self.runner.engine.generate_batch(members, load_image=self.runner.load_image))

    # --- a message delivered again ------------------------------------------------------

    def _recover(self, ticket: str, drawer: str, worker: str | None) -> Iterator[list[Job]]:
        """The batches to draw again of the jobs claimed under `ticket` by a holder that
        died; finished ones are cleaned up and handed off again."""
        ids = sorted(_text(raw) for raw in self.queue.redis.smembers(TICKET_KEY.format(ticket)))
        stale = []
        for job_id in ids:
            job = self.queue.jobs.find(job_id)
            if job is None or job.status is JobStatus.queued:
                continue  # expired, or requeued with a message of its own
            if job.status.finished:
                # Its holder may have died between recording it and cleaning up.
                if self.queue.redis.srem(RUNNING_KEY, job.id):
                    self.queue.mark_finished(job)
                if job_id != ticket:  # the ticket's own job was handed off already
                    self.runner.hand_off(job)
            elif self._holder_gone(job, worker):
                stale.append(job)
        groups: dict[str | None, list[Job]] = {}
        for job in stale:
            key = batch_key(job.request)
            groups.setdefault(key if key is not None else job.id, []).append(job)
        size = self.settings.max_batch
        for group in groups.values():
            for start in range(0, len(group), size):
                taken = self._retake(group[start:start + size], drawer)
                if taken:
                    yield taken

    def _holder_gone(self, job: Job, worker: str | None) -> bool:
        """Whether the process recorded as drawing `job` is dead: on this node, its pid is
        gone (or is this process, which is not drawing it); on another, its heartbeat
        expired. A live holder (a copy of the message handed out while it still works)
        keeps its jobs."""
        if not job.worker:
            return True
        node, _, pid = job.worker.rpartition(":")
        if worker is not None and node == worker:
            return not pid.isdigit() or int(pid) == os.getpid() or not _pid_alive(int(pid))
        expiry = self.queue.heartbeat_expiry(node)
        return expiry is None or expiry < server_time(self.queue.redis)

    def _retake(self, jobs: list[Job], drawer: str) -> list[Job]:
        """Mark `jobs` running again under `drawer`, each only if nobody re-took it since."""
        taken = []
        for job in jobs:
            def again(current: Job, seen: str | None = job.worker) -> Job | None:
                if current.status is not JobStatus.running or current.worker != seen:
                    return None
                return current.model_copy(update={
                    "started_at": time.time(), "attempts": current.attempts + 1, "step": 0,
                    "worker": drawer, "phase": None, "batch_size": len(jobs)})

            updated = self.queue.jobs.update(job.id, again)
            if updated.worker == drawer and updated.status is JobStatus.running:
                log.warning("job %s: its worker %s died while drawing it; drawing it again "
                            "(attempt %d)", job.id, job.worker, updated.attempts)
                taken.append(updated)
        return taken


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
