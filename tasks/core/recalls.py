"""Recalled requests kept for a while, so a Run again button can draw one later.

A chat answers a recalled PNG with its prompt and a Run again button; a button's id has room
for an id, not a request, so the request waits in Redis under an unguessable id for as long
as a job record lives (IMAGINE_JOB_TTL). The id is the capability, as a job id is: whoever
holds the button may run it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import redis
from pydantic import ValidationError

from generator.request import ImageRequest
from tasks.names import RECALL_KEY

ID_BYTES = 12  # 96 random bits: 24 hex characters
ID_PATTERN = re.compile(r"[0-9a-f]{24}")


@dataclass(frozen=True)
class RecallStore:
    """Saves recalled requests and finds them again; blocking (Redis)."""

    redis: redis.Redis
    ttl: int  # seconds; settings.job_ttl

    def save(self, request: ImageRequest) -> str:
        """A new id under which `request` can be found for `ttl` seconds."""
        recall_id = secrets.token_hex(ID_BYTES)
        self.redis.set(RECALL_KEY.format(recall_id), request.model_dump_json(), ex=self.ttl)
        return recall_id

    def find(self, recall_id: str) -> ImageRequest | None:
        """The request saved under `recall_id`; None when it expired, never existed, or was
        saved by a release whose requests this one cannot read."""
        if not ID_PATTERN.fullmatch(recall_id):
            return None  # a mistyped or forged id never reaches Redis
        raw = self.redis.get(RECALL_KEY.format(recall_id))
        if raw is None:
            return None
        try:
            return ImageRequest.model_validate_json(raw)
        except ValidationError:
            return None
