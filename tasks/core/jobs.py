"""The Job: plain typed data kept as a record in Redis with a TTL."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from enum import Enum

import redis
from pydantic import BaseModel, Field

from generator.request import ImageRequest
from settings.i18n import _
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


# Keys of `Requester.extra` that policy and language read, set by the front ends.
EXTRA_LOCALE = "locale"  # the user's language tag ("zh-CN"), for messages (settings/i18n.py)
EXTRA_NSFW_CHANNEL = "nsfw"  # "1": a Discord age-restricted channel
EXTRA_DM = "dm"  # "1": a direct message with the bot
EXTRA_ROLES = "roles"  # Discord role ids / Slack user-group ids, comma-separated
EXTRA_GUILD = "guild_id"  # the Discord server


class ImageVerdict(BaseModel):
    """What image safety said of one image (tasks/policy/safety.py)."""

    score: float = 0.0  # the classifier's NSFW probability; 1.0 when the pipeline flagged it
    flagged: bool = False
    # Who flagged it: "classifier" (IMAGINE_NSFW_MODEL) or "pipeline" (the model's own safety
    # checker, whose image is black); "" when not flagged.
    source: str = ""
    # What the destination's policy made of it: allow | spoiler | block.
    action: str = "allow"
    # spoiler outside Discord: the stored name of the blurred copy shown instead.
    blurred: str | None = None


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
    # Image safety: one verdict per image of `images`, same order; empty: not classified.
    verdicts: list[ImageVerdict] = Field(default_factory=list)
    # Images the quota counted at admission (given back when the job draws none).
    charged: int = 0
    # Deleted by its requester or a moderator (its files and messages are gone): who did it.
    deleted_by: str | None = None
    # Language (#16): what the user wrote, when what was drawn differs (translated into
    # English, enhanced); the detected language of a translated prompt.
    prompt_original: str | None = None
    negative_original: str | None = None
    prompt_language: str | None = None
    enhanced: bool = False

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

    def verdict(self, index: int) -> ImageVerdict:
        """Image `index`'s verdict (allowed when it was not classified)."""
        return self.verdicts[index] if index < len(self.verdicts) else ImageVerdict()

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
            raise JobNotFound(_("No job {job_id}: it never existed or its record expired.").format(
                                  job_id=job_id))
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
                        raise JobNotFound(_("No job {job_id}: it never existed or its record "
                                            "expired.").format(job_id=job_id))
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
