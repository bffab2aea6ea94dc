"""Who may use the bot where: Slack channels, user groups and DMs; Discord servers, channels,
roles and DMs (IMAGINE_SLACK_CHANNELS, IMAGINE_SLACK_USER_GROUPS, IMAGINE_SLACK_DMS,
IMAGINE_DISCORD_GUILDS, IMAGINE_DISCORD_CHANNELS, IMAGINE_DISCORD_ROLES, IMAGINE_DISCORD_DMS;
an empty list allows all).

The front ends know where a request comes from, so they call `check_access` before they build
a job (for buttons too) with the requester as they would record it: `extra` says whether it
is a DM (EXTRA_DM), the Discord server (EXTRA_GUILD) and the user's Discord roles or Slack
user groups (EXTRA_ROLES). A refusal is an AccessDenied whose message says what is allowed;
its `rule` ("access: channel", …) goes to the audit trail through `PolicyGate.refused` with
`refused_job`, since no real job exists yet.

Discord roles cannot be seen in a DM: with IMAGINE_DISCORD_ROLES set, DMs are refused (else
they would be a way around the roles). Slack user groups are workspace-wide, so they apply in
DMs too.
"""

from __future__ import annotations

from collections.abc import Sequence

from generator.request import ImageRequest
from settings import Settings
from settings.i18n import _
from tasks.core.jobs import EXTRA_DM, EXTRA_GUILD, EXTRA_ROLES, Job, Requester
from tasks.errors import AccessDenied

SHOWN = 5  # channels or roles named in a refusal; more are "…"


def check_access(settings: Settings, requester: Requester, *, parent_channel: str = "") -> None:
    """AccessDenied when `requester` may not use the bot where it asks; `parent_channel` is
    the channel of a thread (Discord), whose rules the thread shares."""
    if requester.platform == "slack":
        _check_slack(settings, requester)
    elif requester.platform == "discord":
        _check_discord(settings, requester, parent_channel)


def refused_job(requester: Requester, prompt: str = "") -> Job:
    """A stand-in for the job an access refusal stopped, for its audit entry: who, where,
    and the prompt when there was one (not validated: it was never going to be drawn)."""
    return Job(requester=requester, request=ImageRequest.model_construct(prompt=prompt))


def roles_of(requester: Requester) -> set[str]:
    return {part for part in requester.extra.get(EXTRA_ROLES, "").split(",") if part}


def _check_slack(settings: Settings, requester: Requester) -> None:
    if requester.extra.get(EXTRA_DM) == "1":
        if not settings.slack_dms:
            raise AccessDenied(_("imagine is not available in direct messages here; use "
                                 "/imagine in a channel{where}.").format(
                where=_in_channels(settings.slack_channels)), rule="access: dm")
    elif settings.slack_channels and requester.channel not in settings.slack_channels:
        raise AccessDenied(_("imagine is not enabled in this channel; ask an admin, or use "
                             "it in {channels}.").format(
            channels=_channels(settings.slack_channels)), rule="access: channel")
    groups = settings.slack_user_groups
    if groups and not roles_of(requester) & set(groups):
        raise AccessDenied(_("imagine here is only for members of one of these user groups: "
                             "{groups}; ask an admin to add you.").format(
            groups=_listed([f"<!subteam^{group}>" for group in groups])), rule="access: group")


def _check_discord(settings: Settings, requester: Requester, parent: str) -> None:
    if requester.extra.get(EXTRA_DM) == "1":
        if not settings.discord_dms:
            raise AccessDenied(_("imagine is not available in direct messages here; use "
                                 "/imagine in a server channel{where}.").format(
                where=_in_channels(settings.discord_channels)), rule="access: dm")
        if settings.discord_roles:
            raise AccessDenied(_("imagine needs a server role here, which a direct message "
                                 "cannot show; use /imagine in a server channel{where}.").format(
                where=_in_channels(settings.discord_channels)), rule="access: role")
        return
    guild = requester.extra.get(EXTRA_GUILD, "")
    if settings.discord_guilds and guild not in settings.discord_guilds:
        raise AccessDenied(_("imagine is not enabled on this server; ask an admin."),
                           rule="access: guild")
    allowed = settings.discord_channels
    if allowed and requester.channel not in allowed and parent not in allowed:
        raise AccessDenied(_("imagine is not enabled in this channel; ask an admin, or use "
                             "it in {channels}.").format(channels=_channels(allowed)),
                           rule="access: channel")
    roles = settings.discord_roles
    if roles and not roles_of(requester) & set(roles):
        raise AccessDenied(_("imagine here is only for members with one of these roles: "
                             "{roles}; ask an admin.").format(
            roles=_listed([f"<@&{role}>" for role in roles])),
                           rule="access: role")


def _channels(channels: Sequence[str]) -> str:
    # <#id> is a channel link on both Slack and Discord.
    return _listed([f"<#{channel}>" for channel in channels])


def _in_channels(channels: Sequence[str]) -> str:
    return _(" such as {channels}").format(channels=_channels(channels)) if channels else ""


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (", …" if len(names) > SHOWN else "")
