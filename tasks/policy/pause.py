"""An admin's pause of the queue: jobs are still accepted and wait in line, but no generate
worker starts a new one until it is resumed (jobs already drawing finish)."""

from __future__ import annotations

import json
import time

import redis
from pydantic import BaseModel

from tasks.names import PAUSED_KEY


class Pause(BaseModel):
    by: str  # the admin's user key
    at: float


class QueuePause:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def pause(self, by: str) -> Pause:
        pause = Pause(by=by, at=time.time())
        self.redis.set(PAUSED_KEY, pause.model_dump_json())
        return pause

    def resume(self) -> bool:
        """False when the queue was not paused."""
        return bool(self.redis.delete(PAUSED_KEY))

    def current(self) -> Pause | None:
        raw = self.redis.get(PAUSED_KEY)
        return Pause.model_validate(json.loads(raw)) if raw else None
