"""Report and Delete under a result, once for both chats (bots/slack/manage.py and
bots/discord/manage.py do the platform's part: messages, files, ephemeral answers).

- Report: anyone who sees a result may report it. The first report of a job by a user is
  recorded (`image.reported`) and, when the platform's report channel is configured
  (IMAGINE_SLACK_REPORT_CHANNEL, IMAGINE_DISCORD_REPORT_CHANNEL), posted there for the
  admins; a second press by the same user only thanks them again.
- Delete: the requester or a moderator (bots.permissions.may_delete) removes the result: the
  chat front end deletes its messages, tasks.policy.removal the stored files, the prompt-URL
  cache entry and records `image.deleted`.
"""

from __future__ import annotations

import redis

from bots.presentation import shorten
from settings import Settings
from settings.i18n import _
from tasks.core.jobs import Job
from tasks.names import REPORTED_KEY
from tasks.policy.audit import AuditLog
from tasks.policy.gate import job_entry

PROMPT_SHOWN = 500  # characters of the prompt a report shows


class Reports:
    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.redis = client

    def report(self, job: Job, reporter: str, index: int, link: str = "") -> bool:
        """Record `reporter`'s (a user key) report of image `index` of `job`; False when
        they had reported this job already (nothing recorded again)."""
        key = REPORTED_KEY.format(job.id)
        with self.redis.pipeline() as pipe:
            pipe.sadd(key, reporter)
            pipe.expire(key, self.settings.job_ttl)
            first = bool(pipe.execute()[0])
        if first:
            AuditLog(self.settings, self.redis).record(job_entry(
                "image.reported", job, actor=reporter, outcome="reported",
                nsfw_score=job.verdict(index).score if job.verdicts else None,
                detail=f"image {index + 1}" + (f" {link}" if link else "")))
        return first


def thanks(channel_configured: bool) -> str:
    """What the reporter is told (for their eyes only)."""
    if channel_configured:
        return _("Thanks for the report: it was sent to the admins, who will review it.")
    return _("Thanks for the report: it was recorded, and an admin will review it.")


def report_text(job: Job, reporter: str, requester: str, index: int, link: str) -> str:
    """The admins' message: who reported what, whose it is, the prompt, where it is."""
    lines = [_("🚩 {reporter} reported image {number} of {requester}'s result.").format(
        reporter=reporter, number=index + 1, requester=requester),
        _("Prompt: {prompt}").format(prompt=shorten(job.prompt_original or job.request.prompt,
                                                     PROMPT_SHOWN)),
        _("Job: {job}").format(job=job.id)]
    if link:
        lines.append(_("Message: {link}").format(link=link))
    return "\n".join(lines)


def delete_refusal(requester: str) -> str:
    """What someone who may not delete a result is told."""
    return _("Only {requester} or a moderator can delete this result.").format(
        requester=requester)


def deleted_text() -> str:
    return _("Deleted: the result's messages and its stored images are gone.")


def too_old_text() -> str:
    return _("That job is too old: its record has expired.")
