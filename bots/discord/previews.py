"""Live previews on a Discord status message, and the order of its edits.

The worker stores each job's latest preview JPEG in Redis and counts them in `job.preview`;
a progress delivery uploads it as the status message's one attachment ("preview.jpg") only
when that count is newer than what the message shows (kept in Redis, so a retried or
duplicated progress task never uploads the same preview twice).

Progress edits and the result race: a progress task loaded the job while it ran and edits
after the result went out, which would put a stale preview back on a final message. So a
per-job lock orders them, and the result sets a "final" mark under it before it posts;
every progress edit checks the mark under the same lock and gives up once it is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from bots.discord.rest import TIMEOUT, UploadFile
from tasks.core.delivery import TransientDeliveryError
from tasks.core.jobs import Job, JobStatus
from tasks.core.previews import PreviewStore
from tasks.names import (
    DISCORD_PREVIEW_SHOWN_KEY,
    DISCORD_STATUS_FINAL_KEY,
    DISCORD_STATUS_LOCK_KEY,
)

PREVIEW_FILENAME = "preview.jpg"
# Outlives one status edit (the REST client gives up after TIMEOUT), so the result never
# overtakes an edit still in flight; a crashed holder holds the result back that long.
LOCK_SECONDS = TIMEOUT + 10
FINAL_WAIT = float(LOCK_SECONDS)


@dataclass(frozen=True)
class PreviewUpload:
    """The preview a progress edit carries, and the count it stands for."""

    version: int
    file: UploadFile

    def attach(self, body: dict[str, Any]) -> dict[str, Any]:
        # Listing only the new file replaces whatever the message had attached before.
        return {**body, "attachments": [{"id": 0, "filename": PREVIEW_FILENAME,
                                         "description": "live preview"}]}


class StatusPreviews:
    def __init__(self, client: redis.Redis, ttl: int, preview_ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self.store = PreviewStore(client, preview_ttl)

    def shown(self, job_id: str) -> int:
        value = self.redis.get(DISCORD_PREVIEW_SHOWN_KEY.format(job_id))
        return int(value) if value is not None else 0  # type: ignore[arg-type]

    def mark_shown(self, job_id: str, version: int) -> None:
        self.redis.set(DISCORD_PREVIEW_SHOWN_KEY.format(job_id), version, ex=self.ttl)

    def pending(self, job: Job) -> PreviewUpload | None:
        """The preview to upload now: only while drawing, only one the message lacks."""
        if job.status is not JobStatus.running or job.preview <= self.shown(job.id):
            return None
        jpeg = self.store.get(job.id)
        if jpeg is None:  # expired or dropped: nothing newer to show
            return None
        return PreviewUpload(job.preview, UploadFile(PREVIEW_FILENAME, jpeg, "image/jpeg"))

    def stale(self, job: Job) -> bool:
        """The message shows a preview the job no longer has (it went back to the queue)."""
        return job.status is JobStatus.queued and self.shown(job.id) > 0

    def is_final(self, job_id: str) -> bool:
        return bool(self.redis.exists(DISCORD_STATUS_FINAL_KEY.format(job_id)))

    @contextmanager
    def progress_edit(self, job_id: str) -> Iterator[bool]:
        """True inside when a progress edit may be made now: nobody else is editing and the
        result has not begun. Never waits: a skipped progress edit is not worth a delay."""
        lock = self.redis.lock(DISCORD_STATUS_LOCK_KEY.format(job_id), timeout=LOCK_SECONDS,
                               blocking=False)
        if not lock.acquire():
            yield False
            return
        try:
            yield not self.is_final(job_id)
        finally:
            _release(lock)

    def finish(self, job_id: str) -> None:
        """Bar every later progress edit, after the one in flight (if any) is done."""
        lock = self.redis.lock(DISCORD_STATUS_LOCK_KEY.format(job_id), timeout=LOCK_SECONDS,
                               blocking_timeout=FINAL_WAIT)
        if not lock.acquire():
            raise TransientDeliveryError(f"status message of job {job_id} is locked")
        try:
            self.redis.set(DISCORD_STATUS_FINAL_KEY.format(job_id), "1", ex=self.ttl)
        finally:
            _release(lock)


def _release(lock: redis.lock.Lock) -> None:
    try:
        lock.release()
    except redis.exceptions.LockError:
        pass  # expired during a slow Discord call; the mark it guards is checked again
