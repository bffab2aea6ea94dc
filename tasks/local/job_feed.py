"""One console line per job event under `imagine up`: started, done (seconds), failed,
cancelled, back in line.

It listens to the same Redis pub/sub events the web's progress streams use (every status
change of every job, from whichever worker), so it needs no cooperation from the workers
and sees jobs of every front end. Pub/sub drops what is published while the feed is
reconnecting: a missed line costs nothing, the job itself is in its record.
"""

from __future__ import annotations

import json
import logging

import redis

from tasks.core.jobs import Job, JobStatus, JobStore
from tasks.local.background import Background
from tasks.local.console import Console, short_prompt
from tasks.names import EVENTS_CHANNEL

log = logging.getLogger("imagine.up")
RECONNECT_SECONDS = 1.0


def who_where(job: Job) -> str:
    requester = job.requester
    who = f"{requester.platform}:{requester.user}" if requester.user else requester.platform
    return f"{who} in {requester.channel}" if requester.channel else who


def job_line(job: Job) -> str | None:
    """The line of the status `job` just reached; None for statuses not worth a line."""
    head = f"job {job.id[:8]} {who_where(job)} \"{short_prompt(job.request.prompt)}\""
    if job.status is JobStatus.running:
        return f"{head} started" + (f" on {job.worker}" if job.worker else "")
    if job.status is JobStatus.done:
        seconds = f" in {job.duration:.1f} s" if job.duration is not None else ""
        count = len(job.images)
        return f"{head} done{seconds} ({count} image{'s' if count != 1 else ''})"
    if job.status is JobStatus.failed:
        return f"{head} failed: {job.error or 'no reason given'}"
    if job.status is JobStatus.cancelled:
        return f"{head} cancelled"
    if job.status is JobStatus.queued and job.attempts:
        return f"{head} back in line (its worker stopped)"
    return None


class JobFeed(Background):
    """A daemon thread printing job lines until `stop()`."""

    name = "job feed"

    def __init__(self, client: redis.Redis, jobs: JobStore, console: Console) -> None:
        self.client = client
        self.jobs = jobs
        self.console = console
        self._last: dict[str, JobStatus] = {}  # job id → last status printed (progress repeats it)
        super().__init__()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except redis.RedisError as exc:
                log.debug("job feed lost Redis (%s); reconnecting", exc)
                self._stop.wait(RECONNECT_SECONDS)

    def _listen(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(EVENTS_CHANNEL.format("*"))
        try:
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is not None:
                    self.handle(message["data"])
        finally:
            pubsub.close()

    def handle(self, data: bytes | str) -> None:
        try:
            event = json.loads(data)
            job_id, status = str(event["id"]), JobStatus(event["status"])
        except (ValueError, KeyError, TypeError):
            return
        if self._last.get(job_id) == status:
            return
        self._last[job_id] = status
        job = self.jobs.find(job_id)
        if job is None:
            return
        if status.finished:
            self._last.pop(job_id, None)
        line = job_line(job.model_copy(update={"status": status}))
        if line is not None:
            self.console.event(line)
