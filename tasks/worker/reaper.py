"""The reaper: jobs recorded as running that no live worker is drawing go back in line.

Celery requeues a job whose worker's child died, and (after IMAGINE_VISIBILITY_TIMEOUT) one
whose whole worker host vanished; neither helps a job whose message was acknowledged while
its record still says running (a task that raised, a message lost with a Redis without its
data). Every worker runs the reaper after its heartbeat, every REAP_INTERVAL seconds at most
across all of them (a Redis lock), and it looks only at the running set:

- a job whose worker's heartbeat stopped (or that has run past the hard time limit) is
  requeued with a fresh message, or failed once it has taken down MAX_ATTEMPTS workers;
- a finished job still in the running set (its worker stopped between recording the result
  and cleaning up) is cleaned up and handed to delivery, which does each step once;
- an id without a record leaves the set.

A requeued job may also come back through Celery's own redelivery: the runner skips a job
that finished, and drawing is deterministic and delivery idempotent, so the rare job drawn
twice is posted once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tasks.core import delivery_watch
from tasks.core.jobs import Job, JobStatus
from tasks.core.queue import JobQueue, server_time
from tasks.names import DELIVER_TASK, DELIVERED_KEY, REAPER_LOCK_KEY, RUNNING_KEY, WORKERS_KEY
from tasks.policy.gate import outcome_entry
from tasks.worker import heartbeat
from tasks.worker.runner import MAX_ATTEMPTS, too_many_attempts

log = logging.getLogger(__name__)

REAP_INTERVAL = 5
# A heartbeat this long past its expiry means the worker is gone (not merely slow to beat
# after a Redis restart).
DEAD_AFTER = heartbeat.TTL
# A finished job left in the running set this long was abandoned mid-cleanup.
FINISH_GRACE = 30.0
# Past Celery's hard time limit (job_timeout + 30 s) no worker can still be drawing it.
HARD_LIMIT_MARGIN = 90


class Reaper:
    def __init__(self, queue: JobQueue, has_adapter: Callable[[str], bool], owner: str) -> None:
        self.queue = queue
        self.redis = queue.redis
        self.has_adapter = has_adapter
        self.owner = owner

    def run_once(self) -> list[str]:
        """Look at every running job if no other reaper did in the last REAP_INTERVAL s;
        the ids of the jobs requeued, failed or cleaned up."""
        if not self.redis.set(REAPER_LOCK_KEY, self.owner, nx=True, ex=REAP_INTERVAL):
            return []
        now = server_time(self.redis)
        reaped = [job_id for job_id in self.queue.running_ids() if self._check(job_id, now)]
        return reaped + self._lost_deliveries()

    def _check(self, job_id: str, now: float) -> bool:
        job = self.queue.jobs.find(job_id)
        if job is None:
            self.redis.srem(RUNNING_KEY, job_id)
            return True
        if job.status.finished:
            if now - (job.finished_at or 0.0) < FINISH_GRACE:
                return False  # its worker is cleaning up right now
            self.queue.mark_finished(job)
            self._hand_off(job)
            return True
        if job.status is not JobStatus.running:
            self.redis.srem(RUNNING_KEY, job_id)
            return True
        if not self._abandoned(job, now):
            return False
        if job.attempts >= MAX_ATTEMPTS:
            log.warning("reaper: job %s lost its worker %s %d times; failing it", job.id,
                        job.worker, job.attempts)
            self._fail(job)
        else:
            log.warning("reaper: job %s was running on %s, whose heartbeat stopped; requeued",
                        job.id, job.worker)
            self.queue.requeue(job.id, worker=job.worker)
        return True

    def _abandoned(self, job: Job, now: float) -> bool:
        limit = self.queue.settings.job_timeout + HARD_LIMIT_MARGIN
        if job.started_at is not None and time.time() - job.started_at > limit:
            return True
        if not job.worker:
            return False  # started by a runner that records no worker: time alone decides
        node = job.worker.rsplit(":", 1)[0]
        expiry = self.queue.heartbeat_expiry(node)
        if expiry is None:  # a worker of a version before the sorted set: its key decides
            return not self.redis.exists(WORKERS_KEY.format(node))
        return expiry < now - DEAD_AFTER

    def _fail(self, job: Job) -> None:
        def change(current: Job) -> Job | None:
            if current.status.finished or current.worker != job.worker:
                return None  # finished, or re-taken by a live worker since it was judged
            return current.model_copy(update={"status": JobStatus.failed,
                                              "finished_at": time.time(),
                                              "error": too_many_attempts()})

        failed = self.queue.jobs.update(job.id, change)
        if not failed.status.finished:
            return
        self.queue.mark_finished(failed)
        self.queue.policy.audit.record(outcome_entry(failed))  # the audit trail's job.failed
        self._hand_off(failed)

    def _hand_off(self, job: Job) -> None:
        if self.has_adapter(job.requester.platform):
            delivery_watch.expect(self.redis, job.id)
            self.queue.celery.send_task(DELIVER_TASK, args=[job.id])

    def _lost_deliveries(self) -> list[str]:
        """Send deliveries again whose message vanished (tasks.core.delivery_watch)."""
        sent = []
        for job_id in delivery_watch.overdue(self.redis):
            job = self.queue.jobs.find(job_id)
            if job is None or self.redis.exists(DELIVERED_KEY.format(job_id, "result:complete")):
                delivery_watch.settle(self.redis, job_id)
                continue
            log.warning("reaper: the delivery of job %s was lost (its message vanished); "
                        "sending it again", job_id)
            self._hand_off(job)
            sent.append(job_id)
        return sent
