"""Admin commands (#15), one implementation for both chats.

Discord's `/imagine-admin <command>` (typed options) and Slack's `/imagine admin <command>`
(text, parsed here by `parse_text`) become the same `AdminCommand`; `Admin.run` carries it
out and returns the text (and, for `reveal`, the image) to show the admin alone. The front
ends only check who is an admin (bots.permissions) and show the answer. Every command,
refused ones included, is recorded in the audit trail as `admin.<command>` with the admin
as actor and the user or job it was about.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bots.admin_lists import audit_lines, queue_lines, reveal
from bots.admin_view import AUDIT_DEFAULT, AdminAnswer, AdminCommand, View
from settings import Settings
from settings.errors import ImagineError
from settings.i18n import _
from tasks.core.jobs import JobStatus
from tasks.core.queue import JobQueue
from tasks.core.store_base import ImageStore
from tasks.errors import JobNotFound
from tasks.names import ACTIVE_KEY
from tasks.policy.audit import AuditEntry, AuditLog
from tasks.policy.bans import Bans
from tasks.policy.pause import QueuePause
from tasks.policy.quota import Quotas, format_reset
from tasks.policy.removal import remove_job

BAN, UNBAN, QUOTA, PURGE = "ban", "unban", "quota", "purge"
PAUSE, RESUME, QUEUE, AUDIT, REVEAL, DELETE = "pause", "resume", "queue", "audit", "reveal", "delete"
COMMANDS = (BAN, UNBAN, QUOTA, PURGE, PAUSE, RESUME, QUEUE, AUDIT, REVEAL, DELETE)
ADMIN_WORD = "admin"  # Slack: `/imagine admin …`
AUDIT_MAX = 50
DEFAULT_QUOTA = "default"
# User keys an admin may name in full ("api:ci-bot", "ip:203.0.113.7", "discord:42"): the
# platforms of tasks.core.jobs.Requester and the quotas' address key.
USER_PLATFORMS = ("slack", "discord", "api", "web", "webhook", "cli", "ip")
_SLACK_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_JOB_ID = re.compile(r"[0-9a-f]{8,64}")


class AdminUsage(ImagineError):
    """A command an admin typed that is not one: the message says what was wrong and how
    the commands go."""


# --- Slack's text --------------------------------------------------------------------------


def is_admin_text(text: str) -> bool:
    """`/imagine admin` alone or followed by a command (a prompt never starts that way)."""
    words = text.split(maxsplit=1)
    return bool(words) and words[0].lower() == ADMIN_WORD


def usage(prefix: str = "/imagine admin") -> str:
    """Every command, one a line."""
    lines = [
        _("Admin commands (only you see the answers):"),
        _("`{p} ban USER [reason]`: refuse the user's jobs everywhere").format(p=prefix),
        _("`{p} unban USER`").format(p=prefix),
        _("`{p} quota USER IMAGES|default`: the user's daily images (0: no limit)").format(
            p=prefix),
        _("`{p} purge USER`: cancel the user's unfinished jobs").format(p=prefix),
        _("`{p} pause` / `{p} resume`: stop and restart drawing new jobs").format(p=prefix),
        _("`{p} queue`: the waiting and running jobs").format(p=prefix),
        _("`{p} audit [N]`: the last N audit entries ({default}, at most {most})").format(
            p=prefix, default=AUDIT_DEFAULT, most=AUDIT_MAX),
        _("`{p} reveal [JOB [IMAGE]]`: see a withheld image (no job: the list)").format(
            p=prefix),
        _("`{p} delete JOB`: delete a job's images from storage").format(p=prefix),
        _("USER is a mention, a member ID (U…) or a full key such as `api:ci-bot`."),
    ]
    return "\n".join(lines)


def _bad(problem: str) -> AdminUsage:
    # No words of its own: `problem` and `usage()` are translated where they are made.
    return AdminUsage("\n\n".join(("⚠️ " + problem, usage())))


def slack_user(value: str) -> str:
    """The user key of a Slack user given as `<@U123>`, `U123` or a full key."""
    mention = _SLACK_MENTION.fullmatch(value)
    if mention is not None:
        return f"slack:{mention.group(1)}"
    if _SLACK_ID.fullmatch(value):
        return f"slack:{value}"
    platform, sep, ident = value.partition(":")
    if sep and ident and platform.lower() in USER_PLATFORMS:
        return f"{platform.lower()}:{ident}"
    raise _bad(_("{value} is not a user I can look up: give a mention, or the member ID "
                 "from their profile (⋯ → Copy member ID), such as U012ABCDEF.").format(
                     value=value))


def _number(value: str, what: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise _bad(_("{what} must be a whole number from {low} to {high}, not {value}.").format(
            what=what, low=low, high=high, value=value))
    return int(value)


def _job_id(value: str) -> str:
    if not _JOB_ID.fullmatch(value.lower()):
        raise _bad(_("{value} is not a job id (the hex id `queue`, `audit` and `reveal` "
                     "show).").format(value=value))
    return value.lower()


def parse_text(text: str) -> AdminCommand:
    """`admin ban <@U1> spam` → AdminCommand("ban", "slack:U1", "spam"); AdminUsage else."""
    words = text.split()[1:]
    if not words:
        raise AdminUsage(usage())
    name, args = words[0].lower(), words[1:]
    if name not in COMMANDS:
        raise _bad(_("There is no admin command {name}.").format(name=name))
    if name in (BAN, UNBAN, QUOTA, PURGE, DELETE) and not args:
        raise _bad(_("`delete` needs a job id.") if name == DELETE
                   else _("`{name}` needs a user.").format(name=name))
    if name == BAN:
        return AdminCommand(name, user=slack_user(args[0]), reason=" ".join(args[1:]))
    if name in (UNBAN, PURGE):
        return AdminCommand(name, user=slack_user(args[0]))
    if name == QUOTA:
        if len(args) != 2:
            raise _bad(_("`quota` needs a user and a number of images (or `default`)."))
        images = None if args[1].lower() == DEFAULT_QUOTA else _number(
            args[1], _("The daily quota"), 0, 1_000_000)
        return AdminCommand(name, user=slack_user(args[0]), images=images)
    if name == AUDIT:
        return AdminCommand(name, count=_number(args[0], _("The number of entries"), 1,
                                                AUDIT_MAX) if args else AUDIT_DEFAULT)
    if name == REVEAL and args:
        image = _number(args[1], _("The image number"), 1, 99) if len(args) > 1 else None
        return AdminCommand(name, job=_job_id(args[0]), image=image)
    if name == DELETE:
        return AdminCommand(name, job=_job_id(args[0]))
    return AdminCommand(name)


# --- what the commands do -------------------------------------------------------------------


def admin_refusal() -> str:
    return _("⚠️ Only admins can use admin commands (Discord: Manage Server; Slack: "
             "workspace admins and owners, or users in IMAGINE_SLACK_ADMINS).")


def paused_wait(queue: JobQueue) -> str | None:
    """What a job's wait reads while an admin paused the queue; None while it runs."""
    if QueuePause(queue.redis).current() is None:
        return None
    return _("an unknown time: an admin paused the queue, it starts when resumed")


@dataclass
class Admin:
    settings: Settings
    queue: JobQueue
    storage: ImageStore
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        self.redis = self.queue.redis
        self.audit = AuditLog(self.settings, self.redis)

    def run(self, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
        """Carry `command` out for the admin `actor` (a user key) and audit it."""
        handlers: dict[str, Callable[[AdminCommand, str, View], AdminAnswer]] = {
            BAN: self._ban, UNBAN: self._unban, QUOTA: self._quota, PURGE: self._purge,
            PAUSE: self._pause, RESUME: self._resume, DELETE: self._delete,
            QUEUE: lambda c, a, v: queue_lines(self, v),
            AUDIT: lambda c, a, v: audit_lines(self, c.count, v),
            REVEAL: lambda c, a, v: reveal(self, c, a, v)}
        try:
            answer = handlers[command.name](command, actor, view)
        except JobNotFound:
            answer = AdminAnswer(_("⚠️ There is no job {job}: it never existed or its record "
                                   "expired.").format(job=view.code(command.job)),
                                 detail="no such job", outcome="failed")
        self.record(command, actor, answer.outcome, answer.detail)
        return answer

    def record(self, command: AdminCommand, actor: str, outcome: str, detail: str = "") -> None:
        """The audit entry `admin.<command>` (the front ends record refusals with this)."""
        self.audit.record(AuditEntry(event=f"admin.{command.name}", user=command.user,
                                     actor=actor, job=command.job, outcome=outcome,
                                     detail=detail or command.reason))

    def _ban(self, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
        Bans(self.redis).ban(command.user, actor, command.reason)
        text = _("🚫 {user} is banned: their new jobs are refused everywhere. `purge` cancels "
                 "the ones already waiting.").format(user=view.user(command.user))
        return AdminAnswer(text, detail=command.reason)

    def _unban(self, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
        if not Bans(self.redis).unban(command.user):
            return AdminAnswer(_("{user} was not banned.").format(user=view.user(command.user)),
                               detail="was not banned", outcome="unchanged")
        return AdminAnswer(_("✅ {user} may use the bot again.").format(
            user=view.user(command.user)))

    def _quota(self, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
        Quotas(self.settings, self.redis).set_override(command.user, command.images)
        user = view.user(command.user)
        if command.images is None:
            text = _("{user}'s daily quota follows the server's rules again.").format(user=user)
        elif command.images == 0:
            text = _("{user} has no daily limit now.").format(user=user)
        else:
            text = _("{user} may draw {images} images a day now.").format(
                user=user, images=command.images)
        return AdminAnswer(text, detail=f"daily images: {command.images}")

    def _purge(self, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
        key = ACTIVE_KEY.format(command.user)
        cancelled = stopping = 0
        for raw in sorted(self.redis.smembers(key)):  # type: ignore[union-attr]
            job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                job = self.queue.cancel(job_id)
            except JobNotFound:
                self.redis.srem(key, job_id)  # its record expired: nothing left to stop
                continue
            if job.status is JobStatus.cancelled:
                cancelled += 1
            elif job.status is JobStatus.running:
                stopping += 1
        text = _("Cancelled {cancelled} waiting job(s) of {user}; {stopping} running job(s) "
                 "stop at their next step.").format(cancelled=cancelled, stopping=stopping,
                                                    user=view.user(command.user))
        return AdminAnswer(text, detail=f"{cancelled} cancelled, {stopping} stopping")

    def _pause(self, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
        pause = QueuePause(self.redis)
        current = pause.current()
        if current is not None:
            return AdminAnswer(_("The queue is already paused (by {user}, {ago} ago).").format(
                user=view.user(current.by), ago=format_reset(self.clock() - current.at)),
                detail="already paused", outcome="unchanged")
        pause.pause(actor)
        return AdminAnswer(_("⏸️ Paused: workers finish the jobs they are drawing and start no "
                             "new ones; new jobs are accepted and wait in line. `resume` "
                             "goes on."))

    def _resume(self, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
        if not QueuePause(self.redis).resume():
            return AdminAnswer(_("The queue was not paused."), detail="was not paused",
                               outcome="unchanged")
        return AdminAnswer(_("▶️ Resumed: workers take the waiting jobs again."))

    def _delete(self, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
        job = remove_job(self.settings, self.redis, self.storage, command.job, actor,
                         detail="by an admin command")
        text = _("🗑️ Deleted the stored images of job {job} ({prompt}); its record is marked "
                 "deleted by you. Messages already posted stay until someone deletes them.")
        return AdminAnswer(text.format(job=view.code(job.id), prompt=view.code(
            job.request.prompt)), detail=f"{len(job.images)} image(s)")
