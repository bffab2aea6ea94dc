"""What `imagine audit export --since 7d` and `GET /api/v1/audit?since=7d` share: reading a
`since` value and the entries it selects, oldest first, as JSON Lines.

`since` is an age (`30m`, `12h`, `7d`, also `90s` and `2w`) or an ISO date or date and time
(`2026-01-31`, `2026-01-31T12:00`, `2026-01-31T12:00+01:00`); a time without a zone is UTC.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone

from bots.errors import PromptError
from settings.i18n import _
from tasks.policy.audit import AuditEntry, AuditLog

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_LIMIT = 10_000  # entries one GET /api/v1/audit answers with


def parse_since(value: str, now: float | None = None) -> float:
    """The epoch seconds `value` names; PromptError saying what is allowed otherwise."""
    now = time.time() if now is None else now
    match = _AGE.match(value)
    if match is not None:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PromptError(_(
            "since must be an age such as 30m, 12h or 7d, or an ISO date or date and time "
            "such as 2026-01-31 or 2026-01-31T12:00 (UTC unless it names a zone); got "
            "\"{value}\".").format(value=value)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def entries_since(log: AuditLog, since: float, limit: int | None = None) -> Iterator[AuditEntry]:
    """The entries at or after `since`, oldest first, at most `limit` of them."""
    for count, entry in enumerate(log.since(since)):
        if limit is not None and count >= limit:
            return
        yield entry


def json_line(entry: AuditEntry) -> str:
    """One entry as a line of JSON Lines (its stream id included)."""
    return entry.model_dump_json()
