"""Who may use the bot where on Slack: the facts the access rules need (a DM? the user's
user groups) and the check itself, run before a job is built (tasks/policy/access.py).

User groups: Slack only lists a group's members (`usergroups.users.list`, scope
usergroups:read), so each group that matters — IMAGINE_SLACK_USER_GROUPS and the groups of
IMAGINE_QUOTA_OVERRIDES — is listed once and kept in Redis for GROUP_SECONDS. These calls run
before the ack, so they are few: a handful of groups, cached across processes.
"""

from __future__ import annotations

import json
import logging

import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from settings import Settings
from settings.i18n import _
from tasks.core.jobs import EXTRA_DM, EXTRA_ROLES, Requester
from tasks.core.queue import JobQueue
from tasks.errors import AccessDenied
from tasks.names import SLACK_GROUP_KEY
from tasks.policy.access import check_access, refused_job

log = logging.getLogger(__name__)

GROUP_SECONDS = 300  # how long a group's member list is trusted
QUOTA_GROUP_PREFIX = "slack:group:"  # IMAGINE_QUOTA_OVERRIDES keys of Slack user groups


def is_dm(channel: str) -> bool:
    """A direct message with the app: Slack's DM channel ids start with D."""
    return channel.startswith("D")


class SlackGroups:
    """The user groups (of those that matter here) a user is in."""

    def __init__(self, settings: Settings, client: WebClient, store: redis.Redis) -> None:
        self.client = client
        self.redis = store
        quota_groups = [key[len(QUOTA_GROUP_PREFIX):] for key in settings.quota_overrides
                        if key.startswith(QUOTA_GROUP_PREFIX)]
        self.groups = tuple(dict.fromkeys([*settings.slack_user_groups, *quota_groups]))

    def of(self, user: str) -> tuple[list[str], bool]:
        """The groups `user` is in, and whether every group could be listed."""
        found: list[str] = []
        complete = True
        for group in self.groups:
            members = self.members(group)
            if members is None:
                complete = False
            elif user in members:
                found.append(group)
        return found, complete

    def members(self, group: str) -> set[str] | None:
        """A group's member ids (cached), None when Slack would not list them."""
        key = SLACK_GROUP_KEY.format(group)
        cached = self.redis.get(key)
        if cached is not None:
            return set(json.loads(cached))
        try:
            users = list(self.client.usergroups_users_list(usergroup=group).get("users") or [])
        except SlackApiError as exc:
            error = exc.response.get("error", "")
            hint = (" (reinstall the app with the usergroups:read scope)"
                    if error == "missing_scope" else "")
            log.warning("usergroups.users.list for %s failed: %s%s", group, error, hint)
            return None
        except (SlackClientError, OSError) as exc:
            log.warning("usergroups.users.list for %s failed: %s", group, exc)
            return None
        self.redis.set(key, json.dumps(users), ex=GROUP_SECONDS)
        return set(users)


class SlackAccess:
    """The access check of a Slack request, and the facts its job records."""

    def __init__(self, settings: Settings, queue: JobQueue, client: WebClient) -> None:
        self.settings = settings
        self.queue = queue
        self.groups = SlackGroups(settings, client, queue.redis)

    def requester(self, requester: Requester) -> tuple[Requester, bool]:
        """`requester` with the facts access rules and quotas read (a DM, the user's groups
        in EXTRA_ROLES), and whether its groups are complete: a group Slack would not list
        is unknown, not "not a member"."""
        extra: dict[str, str] = {}
        if is_dm(requester.channel):
            extra[EXTRA_DM] = "1"
        complete = True
        if self.groups.groups:
            found, complete = self.groups.of(requester.user)
            extra[EXTRA_ROLES] = ",".join(found)
        return requester.model_copy(update={"extra": {**requester.extra, **extra}}), complete

    def refusal(self, requester: Requester, prompt: str = "", *,
                complete: bool = True) -> str | None:
        """Why `requester` (with its facts) may not use the bot here, audited, in Slack's
        markup (channel and group links); None when it may."""
        try:
            check_access(self.settings, requester)
        except AccessDenied as exc:
            if not complete and exc.rule == "access: group":
                exc = AccessDenied(_("Slack did not say which user groups you are in, so "
                                     "imagine cannot check that you may use it; try again in "
                                     "a minute."), rule="access: group unknown")
            self.queue.policy.refused(refused_job(requester, prompt), exc)
            return exc.message
        return None
