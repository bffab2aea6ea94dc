"""The audit trail: every job and every policy decision, appended to a Redis Stream.

An entry says who, where, when, what (prompt, model, LoRAs, operation), the outcome and, for
policy decisions, the rule that decided (never shown to the user, kept here for admins).
The stream is capped by length (IMAGINE_AUDIT_MAX_ENTRIES, approximately, as XADD MAXLEN ~
trims whole nodes) and by age (IMAGINE_AUDIT_DAYS: entries hold prompts, so they do not
stay forever): each append trims what is older. Stream ids are milliseconds, so reading
`since` a time is a range query, oldest first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, cast

import redis
from pydantic import BaseModel, Field

from settings import Settings
from tasks.names import AUDIT_STREAM_KEY

READ_CHUNK = 500


class AuditEntry(BaseModel):
    """One event. `event` names it: job.submitted, job.done, job.failed, job.cancelled,
    policy.refused, image.flagged, image.blocked, image.reported, image.deleted,
    image.revealed, admin.<command>."""

    event: str
    at: float = Field(default_factory=time.time)
    user: str = ""  # the user key: "slack:U1", "discord:42", "api:ci-bot", "web:203.0.113.7"
    where: str = ""  # "slack:C9", "discord:<guild>/<channel>", "" for the web
    job: str = ""
    prompt: str = ""
    negative: str = ""
    model: str = ""
    loras: list[str] = Field(default_factory=list)
    operation: str = ""  # txt2img, img2img, upscale, … or the follow-up (reroll, vary_subtle)
    outcome: str = ""  # done, failed, refused, allowed, spoiler, blocked, …
    nsfw_score: float | None = None
    rule: str = ""  # the policy rule that decided (blocklist entry, "quota", "banned", …)
    actor: str = ""  # who did it when not the user (an admin, a moderator)
    detail: str = ""
    id: str = ""  # the stream id, filled when read


class AuditLog:
    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.redis = client
        self.max_entries = settings.audit_max_entries
        self.max_age = settings.audit_days * 86400

    def record(self, entry: AuditEntry) -> str:
        """Append `entry`; trims entries past the length and age caps. Returns its id."""
        body = entry.model_dump_json(exclude={"id"})
        oldest = int((time.time() - self.max_age) * 1000)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(AUDIT_STREAM_KEY, {"e": body}, maxlen=self.max_entries, approximate=True)
            pipe.xtrim(AUDIT_STREAM_KEY, minid=oldest, approximate=False)
            entry_id = pipe.execute()[0]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def since(self, when: float) -> Iterator[AuditEntry]:
        """Every entry at or after `when` (epoch seconds), oldest first."""
        start = f"{max(0, int(when * 1000))}-0"
        while True:
            rows = cast(list[Any], self.redis.xrange(AUDIT_STREAM_KEY, min=start, max="+",
                                                     count=READ_CHUNK))
            for row_id, fields in rows:
                yield _entry(row_id, fields)
            if len(rows) < READ_CHUNK:
                return
            start = "(" + _text(rows[-1][0])

    def last(self, count: int) -> list[AuditEntry]:
        """The newest `count` entries, oldest first."""
        rows = cast(list[Any], self.redis.xrevrange(AUDIT_STREAM_KEY, max="+", min="-",
                                                    count=count))
        return [_entry(row_id, fields) for row_id, fields in reversed(rows)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(row_id: bytes | str, fields: dict[Any, Any]) -> AuditEntry:
    raw = fields.get(b"e", fields.get("e", b"{}"))
    data = json.loads(raw)
    data["id"] = _text(row_id)
    return AuditEntry.model_validate(data)
