"""Who may do what with a job, once for every front end.

- The *requester* may cancel their job and follow it up (reroll, vary, upscale).
- Anyone who sees a finished job's buttons may follow it up too: the new job is theirs,
  answered in the same thread and counted against their own limits.
- A *moderator* may also cancel other people's jobs: on Discord a member with Manage
  Messages; on Slack a workspace admin or owner, or a user listed in IMAGINE_SLACK_ADMINS.
- An *admin* may use admin commands: on Discord a member with Manage Server; on Slack the
  same people as moderators.

The platform adapters only say what the platform knows about a user (`discord_role`,
`slack_role`); the decision is `may_cancel`. Looking a role up can cost an API call, so it is
asked for only when the user is not the requester.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import IntEnum
from typing import Any

from settings.i18n import _
from tasks.core.jobs import Job


class Role(IntEnum):
    member = 0
    moderator = 1
    admin = 2


def cancel_refusal(requester: str | None = None) -> str:
    """What someone who may not cancel a job is told."""
    return _("Only {requester} or a moderator can cancel this job.").format(
        requester=requester or _("the person who asked"))


def may_cancel(job: Job, user: str, role: Callable[[], Role]) -> bool:
    """The requester always; anyone else when `role()` (asked only then) is a moderator."""
    if user and user == job.requester.user:
        return True
    return role() >= Role.moderator


def may_delete(job: Job, user: str, role: Callable[[], Role]) -> bool:
    """Deleting a result (its messages and stored images): the same people as cancelling."""
    return may_cancel(job, user, role)


def discord_role(*, manage_messages: bool, manage_guild: bool) -> Role:
    """A Discord member's role from the permissions the interaction carries."""
    if manage_guild:
        return Role.admin
    return Role.moderator if manage_messages else Role.member


def slack_role(user: str, admins: Collection[str],
               user_info: Callable[[str], Mapping[str, Any]]) -> Role:
    """A Slack user's role: IMAGINE_SLACK_ADMINS, else workspace admin or owner per
    `user_info(user)` (the `user` object of Slack's users.info; not called for listed ids)."""
    if user in admins:
        return Role.admin
    info = user_info(user)
    if info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"):
        return Role.admin
    return Role.member
