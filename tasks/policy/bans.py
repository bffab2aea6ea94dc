"""Users an admin banned: their jobs are refused on every front end until unbanned."""

from __future__ import annotations

import json
import time

import redis
from pydantic import BaseModel

from tasks.names import BANNED_KEY


class Ban(BaseModel):
    user: str  # the user key ("discord:42")
    by: str  # the admin's user key
    at: float
    reason: str = ""


class Bans:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def ban(self, user: str, by: str, reason: str = "") -> Ban:
        ban = Ban(user=user, by=by, at=time.time(), reason=reason)
        self.redis.hset(BANNED_KEY, user, ban.model_dump_json())
        return ban

    def unban(self, user: str) -> bool:
        """Lift `user`'s ban; False when they were not banned."""
        return bool(self.redis.hdel(BANNED_KEY, user))

    def find(self, user: str) -> Ban | None:
        raw = self.redis.hget(BANNED_KEY, user)
        return Ban.model_validate(json.loads(raw)) if raw else None

    def all(self) -> list[Ban]:
        return sorted((Ban.model_validate(json.loads(raw))
                       for raw in self.redis.hvals(BANNED_KEY)), key=lambda ban: ban.at)
