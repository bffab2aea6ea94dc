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

from tasks.names import (
    SLACK_PROGRESS_PACE_KEY,
    SLACK_PROGRESS_PAUSE_KEY,
    SLACK_STATUS_FINAL_KEY,
    SLACK_STATUS_LOCK_KEY,
    SLACK_STATUS_THROTTLE_KEY,
)

LOCK_SECONDS = 60
# Progress edits of one message come at most this often.
PROGRESS_EDIT_SECONDS = 1.5
# chat.update is a Tier 3 method: about 50 calls a minute per workspace, shared by every
# job and process. Progress edits take at most 40 of them (one per 1.5 s, whichever job
# asks), which leaves room for the "queued" and final edits that are never skipped.
TEAM_PROGRESS_SECONDS = 1.5

T = TypeVar("T")


class StatusBusy(Exception):  # noqa: N818 - a state, not a failure
    """Someone else holds the status message of this job right now."""


class StatusGuard:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl

    def is_final(self, job_id: str) -> bool:
        return bool(self.redis.exists(SLACK_STATUS_FINAL_KEY.format(job_id)))

    def edit(self, job_id: str, action: Callable[[], T], *, wait: float = 0.0) -> T | None:
        """A non-final edit: skipped (None) once the final one happened or began."""
        lock = self.redis.lock(SLACK_STATUS_LOCK_KEY.format(job_id), timeout=LOCK_SECONDS,
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
        lock = self.redis.lock(SLACK_STATUS_LOCK_KEY.format(job_id), timeout=LOCK_SECONDS,
                               blocking_timeout=wait)
        if not lock.acquire():
            raise StatusBusy(f"status message of job {job_id} is locked")
        try:
            self.redis.set(SLACK_STATUS_FINAL_KEY.format(job_id), "1", ex=self.ttl)
            return action()
        finally:
            _release(lock)

    def first(self, job_id: str, find: Callable[[], T | None], make: Callable[[], T], *,
              wait: float) -> T:
        """What `find()` finds, else what `make()` makes, under the job's lock: a thing two
        processes may both want to create (the status message) is created once."""
        lock = self.redis.lock(SLACK_STATUS_LOCK_KEY.format(job_id), timeout=LOCK_SECONDS,
                               blocking=wait > 0, blocking_timeout=wait or None)
        if not lock.acquire():
            raise StatusBusy(f"status message of job {job_id} is locked")
        try:
            found = find()
            return found if found is not None else make()
        finally:
            _release(lock)

    def progress_slot(self, job_id: str, team: str = "") -> bool:
        """May a progress edit be made now? Paced per job and per workspace, none while
        Slack has rate-limited this workspace's edits."""
        team_key = team or "unknown"
        if self.redis.exists(SLACK_PROGRESS_PAUSE_KEY.format(team_key)):
            return False
        if not _claim(self.redis, SLACK_STATUS_THROTTLE_KEY.format(job_id), PROGRESS_EDIT_SECONDS):
            return False
        return _claim(self.redis, SLACK_PROGRESS_PACE_KEY.format(team_key), TEAM_PROGRESS_SECONDS)

    def pause_progress(self, team: str, seconds: float) -> None:
        """Slack answered `ratelimited`: no progress edits in this workspace for `seconds`."""
        self.redis.set(SLACK_PROGRESS_PAUSE_KEY.format(team or "unknown"), "1",
                       px=max(1, int(seconds * 1000)))


def _claim(client: redis.Redis, key: str, seconds: float) -> bool:
    """True for the first caller in each `seconds`-long window of `key`."""
    return bool(client.set(key, "1", nx=True, px=max(1, int(seconds * 1000))))


def _release(lock: redis.lock.Lock) -> None:
    try:
        lock.release()
    except redis.exceptions.LockError:
        pass  # expired while a slow Slack call ran; the next holder is already ordered after
