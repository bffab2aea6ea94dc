"""The Job: plain typed data kept as a record in Redis with a TTL."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from enum import Enum

import redis
from pydantic import BaseModel, Field

from generator.request import ImageRequest
from tasks.errors import JobNotFound
from tasks.names import JOB_KEY

# 96 random bits: a job id is the capability to read and follow up a job, so it must be
# unguessable (cancelling also needs the job's owner).
JOB_ID_BYTES = 12


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.done, JobStatus.failed, JobStatus.cancelled)


class Requester(BaseModel):
    """Who asked and where the answer goes. `extra` holds platform-specific routing data."""

    platform: str  # slack | discord | web | api | webhook | cli
    user: str = ""
    channel: str = ""
    thread: str = ""  # Slack thread_ts / Discord message to reply to
    message: str = ""  # the status message the platform shows (Slack ts, Discord message id)
    extra: dict[str, str] = Field(default_factory=dict)

    @property
    def user_key(self) -> str:
        return f"{self.platform}:{self.user or 'anonymous'}"


class Job(BaseModel):
    id: str = Field(default_factory=lambda: secrets.token_hex(JOB_ID_BYTES))
    requester: Requester
    request: ImageRequest
    status: JobStatus = JobStatus.queued
    step: int = 0
    total_steps: int = 0
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    images: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    # Width and height of each image (jobs of earlier releases have none: the request's size).
    image_sizes: list[tuple[int, int]] = Field(default_factory=list)
    # What the user should know about the result ("scaled down to fit …", "first frame used").
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    generation_seconds: float | None = None  # time inside the pipeline, without queue overhead
    worker: str | None = None  # host:pid of the process drawing it, for operators
    parent: str | None = None  # the job a reroll, variation or upscale came from
    action: str | None = None  # the follow-up that made it (bots.followups), for its message
    owner: str | None = None  # who may cancel it through the REST API (token or address)
    # What the worker does before the first step, for the status line ("loading model turbo…").
    phase: str | None = None
    # How many previews the worker stored (PREVIEW_KEY holds the latest); 0: none yet.
    preview: int = 0
    # The jobs drawn in the same pipeline call as this one, itself included.
    batch_size: int = 1
    # Its place in the fair order (tasks.core.scheduler), kept so a requeue keeps it.
    queue_score: float | None = None

    @property
    def progress(self) -> float:
        if self.status is JobStatus.done:
            return 1.0
        return self.step / self.total_steps if self.total_steps else 0.0

    def image_size(self, index: int) -> tuple[int, int]:
        """Width and height of image `index`."""
        if index < len(self.image_sizes):
            return self.image_sizes[index]
        return self.request.width, self.request.height

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class JobStore:
    """Job records in Redis; updates are read-modify-write under WATCH, safe across processes."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl

    def save(self, job: Job) -> Job:
        self.redis.set(JOB_KEY.format(job.id), job.model_dump_json(), ex=self.ttl)
        return job

    def find(self, job_id: str) -> Job | None:
        raw = self.redis.get(JOB_KEY.format(job_id))
        return Job.model_validate_json(raw) if raw else None

    def get(self, job_id: str) -> Job:
        job = self.find(job_id)
        if job is None:
            raise JobNotFound(f"No job {job_id}: it never existed or its record expired.")
        return job

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> Job:
        """Apply `change` atomically; it returns the new job, or None to leave it as it is."""
        key = JOB_KEY.format(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFound(f"No job {job_id}: it never existed or its record expired.")
                    job = Job.model_validate_json(raw)
                    changed = change(job)
                    if changed is None:
                        pipe.unwatch()
                        return job
                    pipe.multi()
                    pipe.set(key, changed.model_dump_json(), ex=self.ttl)
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue
