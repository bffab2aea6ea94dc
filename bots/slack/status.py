"""Slack's status message lock (bots.status_lock) and the pacing of its progress edits."""

from __future__ import annotations

import redis

from bots.status_lock import StatusLock
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


class StatusGuard(StatusLock):
    """Slack's status lock, with the pacing of its progress edits."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        super().__init__(client, ttl, SLACK_STATUS_LOCK_KEY, SLACK_STATUS_FINAL_KEY,
                         LOCK_SECONDS)

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

