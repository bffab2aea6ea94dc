"""`submit(job)` — the only way in — plus positions, wait estimates, cancel and progress.

Celery does not expose queue positions, so the order of waiting jobs is kept here in a
Redis sorted set next to the Celery message; admission (global and per-user limits) and the
insertion happen in one Lua script so concurrent submits cannot overshoot a limit.
Prompt-URL jobs come from anonymous addresses (and proxies that fetch for everyone): they
share one pool of IMAGINE_MAX_WEB_JOBS instead of the per-user limit, so they can neither
fill the queue nor be capped at a few per proxy. Every number asked on a hot path (queue
depth, running jobs, a position, live workers) is read from a structure kept for it, never
by scanning the keyspace.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from celery import Celery

from generator.request import SEED_MAX
from settings import Settings
from settings.i18n import _
from tasks.core import metrics, ops_metrics, routing, scheduler, text_jobs
from tasks.core.jobs import Job, JobStatus, JobStore, Requester
from tasks.errors import QueueFullError, UserLimitError
from tasks.names import (
    ACTIVE_KEY,
    BATCH_SIZES_KEY,
    CANCEL_KEY,
    DEFAULT_MODEL,
    DURATIONS_KEY,
    EVENTS_CHANNEL,
    FAIR_CLOCK_KEY,
    FAIR_USER_KEY,
    GENERATE_QUEUE,
    GENERATE_TASK,
    JOB_KEY,
    QUEUE_KEY,
    RUNNING_KEY,
    SEQ_KEY,
    WEB_ACTIVE_KEY,
    WORKER_BEATS_KEY,
    WORKERS_KEY,
    queue_model,
)
from tasks.policy.gate import PolicyGate, outcome_entry

DURATION_SAMPLES = 20
DEFAULT_DURATION = 10.0  # seconds, until the queue has seen real jobs

QUEUE_FULL, USER_FULL, WEB_FULL = -1, -2, -3
# Requesters known only by an address: prompt URLs (a Markdown image, a proxy fetching it).
SHARED_POOL_PLATFORMS = frozenset({"web"})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _consumes(info: dict[str, object], queue: str) -> bool:
    queues = info.get("queues")
    if not isinstance(queues, list):
        return False
    if queue == GENERATE_QUEUE:
        return any(queue_model(str(name)) is not None for name in queues)
    return queue in queues


def server_time(client: redis.Redis) -> float:
    """Redis' clock: every process compares heartbeats against the same one."""
    seconds, micros = client.time()  # type: ignore[misc]
    return float(seconds) + float(micros) / 1e6


@dataclass(frozen=True)
class Submitted:
    job: Job
    position: int
    eta_seconds: float | None  # None: workers run, but none serves the job's model

    @property
    def job_id(self) -> str:
        return self.job.id


def format_wait(seconds: float | None) -> str:
    if seconds is None:
        return _("an unknown time (no running worker serves this model)")
    if seconds < 60:
        return f"~{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"


def random_seed() -> int:
    return secrets.randbelow(SEED_MAX + 1)


class JobQueue:
    """Front ends and workers share this view of the queue; one per process."""

    def __init__(self, settings: Settings, client: redis.Redis, celery: Celery) -> None:
        self.settings = settings
        self.redis = client
        self.celery = celery
        self.jobs = JobStore(client, settings.job_ttl)
        self._admit = client.register_script(scheduler.ADMIT)
        self._rescore = client.register_script(scheduler.RESCORE)
        self._claimer = scheduler.Claimer(settings, client)
        self.policy = PolicyGate(settings, client)

    # --- the way in -------------------------------------------------------------------
    def submit(self, job: Job) -> Submitted:
        """Store the job, take its place in line and enqueue it; QueueFullError when full,
        PolicyRefusal when a rule of the server's policy refuses it (tasks.policy)."""
        if job.request.seed is None:
            job = job.model_copy(update={"request": job.request.with_seed(random_seed())})
        job = self.policy.admit(job)
        try:
            return self._enter(job)
        except Exception:
            self.policy.quotas.refund(job)
            raise

    def _enter(self, job: Job) -> Submitted:
        self.jobs.save(job)
        pool, limit, refusal = self._pool(job)
        position, count, score = self._admit(
            keys=[QUEUE_KEY, pool, SEQ_KEY, routing.model_key(job.request.model),
                  FAIR_CLOCK_KEY, FAIR_USER_KEY.format(job.requester.user_key)],
            args=[job.id, self.settings.max_queue, limit, self.settings.job_ttl, refusal,
                  scheduler.tier(job.requester, self.settings)])
        if position < 0:
            self.redis.delete(JOB_KEY.format(job.id))
            raise self._full_error(int(position), int(count))
        # The record gets the score when the job leaves the line (claim, mark_started).
        job = job.model_copy(update={"queue_score": float(score)})
        try:
            self._send(job)
        except Exception:
            self._forget(job)
            raise
        workers = self.alive_workers(GENERATE_QUEUE)
        place = self._place(job, workers) or int(position)
        return Submitted(job, place, self.eta(place, job.request.model, workers))

    def _send(self, job: Job) -> None:
        """The job's Celery message, on its model's queue (routing), after its text's (#16)."""
        text_jobs.send_early(self.celery, self.settings, job)
        queue = routing.job_queue_name(job.request.model, self.settings.catalogue)
        self.celery.send_task(GENERATE_TASK, args=[job.id], task_id=job.id, queue=queue)

    def _pool(self, job: Job) -> tuple[str, int, int]:
        """The set that counts this job's unfinished siblings, its limit, the refusal code."""
        if job.requester.platform in SHARED_POOL_PLATFORMS:
            return WEB_ACTIVE_KEY, self.settings.web_jobs_limit, WEB_FULL
        return (ACTIVE_KEY.format(job.requester.user_key), self.settings.max_jobs_per_user,
                USER_FULL)

    def _forget(self, job: Job) -> None:
        self.redis.zrem(QUEUE_KEY, job.id)
        self.redis.zrem(routing.model_key(job.request.model), job.id)
        self.redis.srem(self._pool(job)[0], job.id)
        self.redis.delete(JOB_KEY.format(job.id))

    def _full_error(self, code: int, count: int) -> QueueFullError:
        if code in (QUEUE_FULL, WEB_FULL):
            wait = format_wait(self.average_duration() * max(1, count) / self.worker_count())
            if code == WEB_FULL:
                return QueueFullError(_("{count} prompt-URL images are being drawn, the most "
                                        "at once; try again in {wait}.").format(count=count,
                                                                                wait=wait))
            return QueueFullError(_("The queue is full ({count} jobs waiting); try again in "
                                    "{wait}.").format(count=count, wait=wait))
        return UserLimitError(_("You already have {count} unfinished jobs (the limit is {limit}); "
                                "wait for one to finish or cancel one.").format(
                                    count=count, limit=self.settings.max_jobs_per_user))

    # --- where things stand -----------------------------------------------------------
    def position(self, job_id: str) -> int | None:
        """1 for the next job to start; None once it runs or is gone.

        Counts only the waiting jobs that the workers able to draw this one could take
        first (routing.competing_models); a job queued before per-model sets existed has
        its place in the whole line.
        """
        job = self.jobs.find(job_id)
        return None if job is None else self._place(job, self.alive_workers(GENERATE_QUEUE))

    def _place(self, job: Job, workers: list[dict[str, object]]) -> int | None:
        job_id = job.id
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrank(QUEUE_KEY, job_id)
            pipe.zscore(routing.model_key(job.request.model), job_id)
            rank, score = pipe.execute()
        if rank is None:
            return None
        if score is None:
            return int(rank) + 1
        models = routing.competing_models(job.request.model, workers)
        return routing.count_ahead(self.redis, float(score), models)

    def next_position(self, model: str = DEFAULT_MODEL,
                      requester: Requester | None = None) -> int:
        """The position a job of `model` submitted now by `requester` would get (shown
        before submitting): behind the jobs of its tier and fair turn, so a user with four
        jobs waiting is told a later place than a newcomer. No requester: the end of line."""
        models = routing.competing_models(model, self.alive_workers(GENERATE_QUEUE))
        bound: float | str = "+inf"
        if requester is not None:
            bound = scheduler.next_score(self.redis, requester, self.settings)
        return routing.count_ahead(self.redis, bound, models) + 1

    def queued_count(self) -> int:
        return int(self.redis.zcard(QUEUE_KEY))

    def running_count(self) -> int:
        return int(self.redis.scard(RUNNING_KEY))

    def average_duration(self) -> float:
        samples = [float(x) for x in self.redis.lrange(DURATIONS_KEY, 0, -1)]
        return sum(samples) / len(samples) if samples else DEFAULT_DURATION

    def worker_count(self, queue: str = GENERATE_QUEUE) -> int:
        return max(1, len(self.alive_workers(queue)))

    def alive_workers(self, queue: str | None = None) -> list[dict[str, object]]:
        """Workers whose heartbeat has not expired: three calls however large Redis is.

        `queue` "generate" means every generate worker, whichever models' queues it takes.
        """
        names = self.redis.zrangebyscore(WORKER_BEATS_KEY, server_time(self.redis), "+inf")
        if not names:
            return []
        workers = []
        keys = [WORKERS_KEY.format(_text(name)) for name in names]  # type: ignore[arg-type]
        for raw in self.redis.mget(keys):
            if raw:
                info = json.loads(raw)
                if queue is None or _consumes(info, queue):
                    workers.append(info)
        return workers

    def heartbeat_expiry(self, hostname: str) -> float | None:
        """When this worker's heartbeat runs out (Redis' clock); None if it never beat."""
        score = self.redis.zscore(WORKER_BEATS_KEY, hostname)
        return None if score is None else float(score)

    def estimate_wait(self, position: int, model: str = DEFAULT_MODEL) -> float:
        """Seconds until a job of `model` at `position` is done: the jobs ahead, the running
        ones and itself, shared by the live workers serving `model`. When none does, as if
        one were about to start (callers that need a number, such as Retry-After)."""
        estimate = self.eta(position, model)
        if estimate is None:
            return self.average_duration() * (position + self.running_count())
        return estimate

    def eta(self, position: int, model: str = DEFAULT_MODEL,
            workers: list[dict[str, object]] | None = None) -> float | None:
        """estimate_wait, but None when generate workers run and none serves `model`: no
        number would be true. With no worker at all, as if one were about to start."""
        if workers is None:
            workers = self.alive_workers(GENERATE_QUEUE)
        serving = len(routing.serving(model, workers))
        if workers and not serving:
            return None
        # A worker draws one batch at a time: jobs go by batches of the recent typical
        # size, each taking the recent time of one batch (tasks.core.scheduler.batch_rate).
        per_batch, seconds = scheduler.batch_rate(self.redis, DEFAULT_DURATION)
        running = self.running_count()
        if serving:
            running = min(running, round(serving * per_batch))
        ahead = position - 1 + running
        return seconds * (ahead / (max(1, serving) * per_batch) + 1)

    # --- what workers report ----------------------------------------------------------
    def claim(self, model: str, drawer: str, ticket: str) -> list[Job]:
        """Take the next batch of `model` (tasks.core.scheduler.Claimer): the first waiting
        job in fair order and up to IMAGINE_MAX_BATCH-1 compatible ones among the next
        IMAGINE_BATCH_WINDOW, now running under `drawer` and listed under `ticket`; [] when
        none waits."""
        return self._claimer.claim(model, drawer, ticket)

    def mark_started(self, job_id: str) -> None:
        """The one-job path: the job leaves the line, its record keeps its fair score."""
        job = self.jobs.find(job_id)
        score = self.redis.zscore(QUEUE_KEY, job_id)
        with self.redis.pipeline() as pipe:
            pipe.zrem(QUEUE_KEY, job_id)
            if job is not None:
                pipe.zrem(routing.model_key(job.request.model), job_id)
            pipe.sadd(RUNNING_KEY, job_id)
            pipe.execute()
        if job is not None and score is not None and job.queue_score is None:
            self.jobs.update(job_id, lambda j: None if j.queue_score is not None
                             else j.model_copy(update={"queue_score": float(score)}))

    def mark_finished(self, job: Job) -> None:
        with self.redis.pipeline() as pipe:
            pipe.zrem(QUEUE_KEY, job.id)
            pipe.zrem(routing.model_key(job.request.model), job.id)
            pipe.srem(RUNNING_KEY, job.id)
            pipe.srem(self._pool(job)[0], job.id)
            pipe.delete(CANCEL_KEY.format(job.id))
            if job.status is JobStatus.done and job.duration is not None:
                pipe.lpush(DURATIONS_KEY, job.duration)
                pipe.ltrim(DURATIONS_KEY, 0, DURATION_SAMPLES - 1)
                pipe.lpush(BATCH_SIZES_KEY, job.batch_size)  # same index as its duration
                pipe.ltrim(BATCH_SIZES_KEY, 0, DURATION_SAMPLES - 1)
            metrics.record_job_finished(pipe, job.requester.platform, job.status.value,
                                        job.duration if job.status is JobStatus.done else None)
            ops_metrics.record_job(pipe, job)
            pipe.execute()
        self.policy.quotas.settle(job)  # GPU time counted, or the images of none given back
        self.publish(job)

    def requeue(self, job_id: str, worker: str | None = None) -> Job:
        """A running job nobody draws any more goes back in line, in the place its fair
        score gave it, with a fresh Celery message; a job not running is left as it is, and
        so is one that `worker` (the holder judged dead) no longer draws: another took it."""

        def back(job: Job) -> Job | None:
            if job.status is not JobStatus.running or (worker is not None
                                                        and job.worker != worker):
                return None
            return job.model_copy(update={"status": JobStatus.queued, "step": 0,
                                          "worker": None})

        job = self.jobs.update(job_id, back)
        if job.status is JobStatus.queued:
            score = job.queue_score
            if score is None:  # started before fair scores: its turn comes now
                score = float(self._rescore(
                    keys=[FAIR_CLOCK_KEY, FAIR_USER_KEY.format(job.requester.user_key),
                          SEQ_KEY],
                    args=[scheduler.tier(job.requester, self.settings), self.settings.job_ttl]))
            with self.redis.pipeline() as pipe:
                pipe.srem(RUNNING_KEY, job.id)
                pipe.zadd(QUEUE_KEY, {job.id: score})
                pipe.zadd(routing.model_key(job.request.model), {job.id: score})
                pipe.execute()
            self._send(job)
            self.publish(job)
        return job

    def running_ids(self) -> list[str]:
        return [_text(raw) for raw in self.redis.smembers(RUNNING_KEY)]  # type: ignore[union-attr]

    def publish(self, job: Job) -> None:
        event = {"id": job.id, "status": job.status.value, "step": job.step,
                 "total": job.total_steps, "images": job.images, "error": job.error,
                 "preview": job.preview}
        self.redis.publish(EVENTS_CHANNEL.format(job.id), json.dumps(event))

    def watch(self, job_id: str, timeout: float) -> Iterator[dict[str, object]]:
        """Progress events of one job until it finishes or `timeout` passes."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(EVENTS_CHANNEL.format(job_id))
        try:
            job = self.jobs.get(job_id)  # after subscribing, so no event falls in between
            if job.status.finished:
                yield {"id": job.id, "status": job.status.value, "images": job.images}
                return
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=min(left, 1.0))
                if message is None:
                    continue
                event = json.loads(message["data"])
                yield event
                if JobStatus(event["status"]).finished:
                    return
        finally:
            pubsub.close()

    # --- cancel -----------------------------------------------------------------------
    def cancel(self, job_id: str) -> Job:
        """A queued job never runs; a running one stops at its next step."""
        def change(job: Job) -> Job | None:
            if job.status is JobStatus.queued:
                return job.model_copy(
                    update={"status": JobStatus.cancelled, "finished_at": time.time(),
                            _("error"): _("Cancelled before it started.")})
            return None

        job = self.jobs.update(job_id, change)
        if job.status is JobStatus.cancelled:
            self.mark_finished(job)
            self.policy.audit.record(outcome_entry(job))
        elif job.status is JobStatus.running:
            self.redis.set(CANCEL_KEY.format(job_id), "1", ex=self.settings.job_ttl)
        return job

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(CANCEL_KEY.format(job_id)))
