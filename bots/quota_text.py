"""The answer to `/imagine quota` (Slack) and `/quota` (Discord): what the asker used today,
what is left and when it resets, in the chat's markup (`bold` is `*` or `**`)."""

from __future__ import annotations

import redis

from settings.i18n import _, ngettext
from tasks.core.jobs import Requester
from tasks.policy.quota import Quotas, QuotaUsage, format_reset

QUOTA = "quota"  # Slack: `/imagine quota`, the text that asks for it


def quota_text(usage: QuotaUsage, bold: str = "*") -> str:
    if usage.unlimited:
        return ngettext("You have no daily limit; you made {used} image today.",
                        "You have no daily limit; you made {used} images today.",
                        usage.images_used).format(used=usage.images_used)
    lines = [bold + _("Your daily quota") + bold]
    if usage.images_limit is None:
        lines.append(_("Images: {used} today, no limit.").format(used=usage.images_used))
    else:
        lines.append(_("Images: {used} of {limit} used today, {left} left.").format(
            used=usage.images_used, limit=usage.images_limit, left=usage.images_left))
    if usage.gpu_limit is not None:
        lines.append(_("GPU time: {used:.0f} of {limit:.0f} seconds used today, {left:.0f} "
                       "left.").format(used=usage.gpu_used, limit=usage.gpu_limit,
                                       left=usage.gpu_left))
    lines.append(_("Your quota resets at 00:00 UTC, in {wait}.").format(
        wait=format_reset(usage.seconds_to_reset)))
    return "\n".join(lines)


def quota_answer(quotas: Quotas, requester: Requester, bold: str = "*") -> str:
    """quota_text for the user behind `requester` (their roles or groups in its extra)."""
    try:
        return quota_text(quotas.usage_of(requester), bold)
    except redis.RedisError:
        return _("Your quota cannot be read right now; try again in a minute.")
