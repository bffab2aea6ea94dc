"""One status message per job, edited by several processes without overwriting the result.

The front end edits it after submit ("queued, #3"), the deliver worker edits it with progress
and finally with the result. Those edits can race (a tiny job finishes before the front end
gets to its edit). A per-job Redis lock orders them and a "final" mark, set under the lock
before the final edit, makes every later non-final edit a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis

LOCK_KEY = "imagine:slack:status-lock:{}"
FINAL_KEY = "imagine:slack:status-final:{}"
THROTTLE_KEY = "imagine:slack:status-throttle:{}"
LOCK_SECONDS = 60
# chat.update is a Tier 3 method (about 50 a minute) and Slack allows about one message
# per second per channel: progress edits of one message come at most this often.
PROGRESS_EDIT_SECONDS = 1.5

T = TypeVar("T")


class StatusBusy(Exception):  # noqa: N818 - a state, not a failure
    """Someone else holds the status message of this job right now."""


class StatusGuard:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl

    def is_final(self, job_id: str) -> bool:
        return bool(self.redis.exists(FINAL_KEY.format(job_id)))

    def edit(self, job_id: str, action: Callable[[], T], *, wait: float = 0.0) -> T | None:
        """A non-final edit: skipped (None) once the final one happened or began."""
        lock = self.redis.lock(LOCK_KEY.format(job_id), timeout=LOCK_SECONDS,
                               blocking=wait > 0, blocking_timeout=wait or None)
        if not lock.acquire():
            return None
        try:
            if self.is_final(job_id):
                return None
            return action()
        finally:
            _release(lock)

    def final(self, job_id: str, action: Callable[[], T], *, wait: float = 30.0) -> T:
        """The last edit: waits for a running edit, then bars every later non-final one."""
        lock = self.redis.lock(LOCK_KEY.format(job_id), timeout=LOCK_SECONDS,
                               blocking_timeout=wait)
        if not lock.acquire():
            raise StatusBusy(f"status message of job {job_id} is locked")
        try:
            self.redis.set(FINAL_KEY.format(job_id), "1", ex=self.ttl)
            return action()
        finally:
            _release(lock)

    def progress_slot(self, job_id: str, seconds: float = PROGRESS_EDIT_SECONDS) -> bool:
        """True at most once per `seconds` for one job's progress edits."""
        return bool(self.redis.set(THROTTLE_KEY.format(job_id), "1", nx=True,
                                   px=max(1, int(seconds * 1000))))


def _release(lock: redis.lock.Lock) -> None:
    try:
        lock.release()
    except redis.exceptions.LockError:
        pass  # expired while a slow Slack call ran; the next holder is already ordered after
