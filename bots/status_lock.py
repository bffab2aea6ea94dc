"""One status message per job, edited by several processes without overwriting the result.

The front end edits it after submit ("queued, #3"), the deliver worker edits it with progress
and finally with the result. Those edits can race (a tiny job finishes before the front end
gets to its edit, a progress task loaded the job before it finished). A per-job Redis lock
orders them and a "final" mark, set under the lock before the final edit, makes every later
non-final edit a no-op. Each chat keeps its own keys (tasks.names).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis

T = TypeVar("T")


class StatusBusy(Exception):  # noqa: N818 - a state, not a failure
    """Someone else holds the status message of this job right now."""


class StatusLock:
    def __init__(self, client: redis.Redis, ttl: int, lock_key: str, final_key: str,
                 lock_seconds: float) -> None:
        self.redis = client
        self.ttl = ttl
        self.lock_key = lock_key  # "…:{}" with the job id
        self.final_key = final_key
        self.lock_seconds = lock_seconds

    def is_final(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.final_key.format(job_id)))

    def edit(self, job_id: str, action: Callable[[], T], *, wait: float = 0.0) -> T | None:
        """A non-final edit: skipped (None) once the final one happened or began, or when
        another edit holds the lock longer than `wait` (0: never waits)."""
        lock = self._lock(job_id, wait)
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
        lock = self._lock(job_id, wait)
        if not lock.acquire():
            raise StatusBusy(f"status message of job {job_id} is locked")
        try:
            self.redis.set(self.final_key.format(job_id), "1", ex=self.ttl)
            return action()
        finally:
            _release(lock)

    def first(self, job_id: str, find: Callable[[], T | None], make: Callable[[], T], *,
              wait: float) -> T:
        """What `find()` finds, else what `make()` makes, under the job's lock: a thing two
        processes may both want to create (the status message) is created once."""
        lock = self._lock(job_id, wait)
        if not lock.acquire():
            raise StatusBusy(f"status message of job {job_id} is locked")
        try:
            found = find()
            return found if found is not None else make()
        finally:
            _release(lock)

    def _lock(self, job_id: str, wait: float) -> redis.lock.Lock:
        return self.redis.lock(self.lock_key.format(job_id), timeout=self.lock_seconds,
                               blocking=wait > 0, blocking_timeout=wait or None)


def _release(lock: redis.lock.Lock) -> None:
    try:
        lock.release()
    except redis.exceptions.LockError:
        pass  # expired during a slow chat call; the next holder is already ordered after
