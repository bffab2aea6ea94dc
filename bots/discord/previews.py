"""Live previews on a Discord status message, and the order of its edits.

The worker stores each job's latest preview JPEG in Redis and counts them in `job.preview`;
a progress delivery uploads it as the status message's one attachment ("preview.jpg") only
when that count is newer than what the message shows (kept in Redis, so a retried or
duplicated progress task never uploads the same preview twice).

Progress edits and the result race: a progress task loaded the job while it ran and edits
after the result went out, which would put a stale preview back on a final message. The
status message's lock (bots.status_lock) orders them: the result sets the "final" mark
under it before it posts, and every progress edit gives up once it is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from bots.discord.rest import TIMEOUT, UploadFile
from bots.status_lock import StatusBusy, StatusLock
from settings.i18n import _
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
                                         "description": _("live preview")}]}


class StatusPreviews:
    def __init__(self, client: redis.Redis, ttl: int, preview_ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self.store = PreviewStore(client, preview_ttl)
        self.status = StatusLock(client, ttl, DISCORD_STATUS_LOCK_KEY,
                                 DISCORD_STATUS_FINAL_KEY, LOCK_SECONDS)

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

    def edit(self, job_id: str, action: Callable[[], object]) -> None:
        """A progress edit, made only when nobody else is editing and the result has not
        begun. Never waits: a skipped progress edit is not worth a delay."""
        self.status.edit(job_id, action)

    def finish(self, job_id: str) -> None:
        """Bar every later progress edit, after the one in flight (if any) is done."""
        try:
            self.status.final(job_id, lambda: None, wait=FINAL_WAIT)
        except StatusBusy as exc:
            raise TransientDeliveryError(str(exc)) from None

