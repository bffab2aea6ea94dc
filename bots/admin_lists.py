"""What the admin commands that show things answer (bots.admin): the queue, the last audit
entries, withheld images and the one an admin reveals."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from bots.admin_view import AdminAnswer, AdminCommand, AdminFile, View
from settings.errors import ImagineError
from settings.i18n import _
from tasks.core.jobs import Job
from tasks.names import BLOCKED_IMAGES_KEY, QUEUE_KEY
from tasks.policy.audit import AuditEntry
from tasks.policy.gate import job_entry
from tasks.policy.pause import QueuePause
from tasks.policy.quota import format_reset

if TYPE_CHECKING:
    from bots.admin import Admin

LISTED = 10  # jobs of each kind, and withheld images, that one answer lists


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ago(admin: Admin, when: float | None) -> str:
    return format_reset(admin.clock() - when) if when else "?"


def _job_line(admin: Admin, job: Job, view: View) -> str:
    return _("{job} {user} {prompt}").format(job=view.code(job.id, 64), user=view.user(
        job.requester.user_key), prompt=view.code(job.request.prompt, 50))


def queue_lines(admin: Admin, view: View) -> AdminAnswer:
    """The running jobs (oldest first) and the first waiting ones, in line order."""
    lines = []
    pause = QueuePause(admin.redis).current()
    if pause is not None:
        lines.append(_("⏸️ Paused by {user}, {ago} ago: nothing new starts.").format(
            user=view.user(pause.by), ago=_ago(admin, pause.at)))
    found = (admin.queue.jobs.find(job_id) for job_id in admin.queue.running_ids())
    running = sorted((job for job in found if job is not None),
                     key=lambda job: job.started_at or 0.0)
    lines.append(_("Running: {count}").format(count=len(running)))
    for job in running[:LISTED]:
        lines.append("• " + _("{line}: step {step}/{total}, started {ago} ago").format(
            line=_job_line(admin, job, view), step=job.step, total=job.total_steps or "?",
            ago=_ago(admin, job.started_at)))
    waiting = int(admin.redis.zcard(QUEUE_KEY))
    lines.append(_("Waiting: {count}").format(count=waiting))
    first = cast(list[bytes], admin.redis.zrange(QUEUE_KEY, 0, LISTED - 1))
    for position, raw in enumerate(first, 1):
        queued = admin.queue.jobs.find(_text(raw))
        if queued is not None:
            lines.append("• " + _("#{position} {line}: waiting {ago}").format(
                position=position, line=_job_line(admin, queued, view),
                ago=_ago(admin, queued.created_at)))
    if waiting > LISTED:
        lines.append(_("… and {count} more waiting.").format(count=waiting - LISTED))
    return AdminAnswer(view.fit(lines), detail=f"{len(running)} running, {waiting} waiting")


def _entry_line(entry: AuditEntry, view: View) -> str:
    when = time.strftime("%m-%d %H:%M:%S", time.gmtime(entry.at))
    parts = [f"`{when}` `{entry.event}`"]
    if entry.user:
        parts.append(view.user(entry.user))
    if entry.actor:
        parts.append(_("by {actor}").format(actor=view.user(entry.actor)))
    if entry.job:
        parts.append(view.code(entry.job, 64))
    if entry.prompt:
        parts.append(view.code(entry.prompt, 40))
    details = [entry.outcome, _("rule: {rule}").format(rule=entry.rule) if entry.rule else "",
               f"NSFW {entry.nsfw_score:.2f}" if entry.nsfw_score is not None else "",
               entry.detail]
    shown = [view.escape(" ".join(part.split())[:80]) for part in details if part]
    return " ".join(parts) + (" · " + " · ".join(shown) if shown else "")


def audit_lines(admin: Admin, count: int, view: View) -> AdminAnswer:
    entries = admin.audit.last(count)
    if not entries:
        return AdminAnswer(_("The audit trail is empty."), detail="0 entries")
    lines = [_("The last {count} audit entries, oldest first (UTC):").format(count=len(entries))]
    lines += [_entry_line(entry, view) for entry in entries]
    return AdminAnswer(view.fit(lines), detail=f"{len(entries)} entries")


def withheld_list(admin: Admin, view: View) -> AdminAnswer:
    """The images the policy withheld most recently, newest first."""
    rows = cast(list[tuple[bytes, float]],
                admin.redis.zrevrange(BLOCKED_IMAGES_KEY, 0, LISTED - 1, withscores=True))
    total = int(admin.redis.zcard(BLOCKED_IMAGES_KEY))
    if not rows:
        return AdminAnswer(_("No image is withheld."), detail="0 withheld")
    lines = [_("Withheld images, newest first ({count} in all):").format(count=total)]
    for raw, when in rows:
        job_id, _sep, index = _text(raw).rpartition(":")
        job = admin.queue.jobs.find(job_id)
        number = int(index) + 1 if index.isdigit() else 1
        line = _job_line(admin, job, view) if job is not None else view.code(job_id, 64)
        lines.append("• " + _("{line} image {number}, withheld {ago} ago").format(
            line=line, number=number, ago=_ago(admin, float(when))))
    return AdminAnswer(view.fit(lines), detail=f"{total} withheld")


def _chosen_image(job: Job, image: int | None) -> int:
    """The index of the image to reveal: the one asked for, else the first withheld."""
    if image is not None:
        return image - 1
    blocked = [i for i in range(len(job.images)) if job.verdict(i).action == "block"]
    flagged = [i for i in range(len(job.images)) if job.verdict(i).flagged]
    return (blocked or flagged or [0])[0]


def reveal(admin: Admin, command: AdminCommand, actor: str, view: View) -> AdminAnswer:
    """A job's image for the admin's eyes alone (audited image.revealed); no job: the list."""
    if not command.job:
        return withheld_list(admin, view)
    job = admin.queue.jobs.get(command.job)
    index = _chosen_image(job, command.image)
    if job.deleted_by:
        return AdminAnswer(_("⚠️ The images of job {job} were deleted.").format(
            job=view.code(job.id, 64)), detail="deleted", outcome="failed")
    if not 0 <= index < len(job.images):
        text = _("⚠️ Job {job} has no image {number}: it has {count}.").format(
            job=view.code(job.id, 64), number=index + 1, count=len(job.images))
        return AdminAnswer(text, detail=f"no image {index + 1}", outcome="failed")
    try:
        data = admin.storage.read(job.images[index])
    except ImagineError as exc:
        return AdminAnswer(f"⚠️ {exc.message}", detail="image missing", outcome="failed")
    verdict = job.verdict(index)
    admin.audit.record(job_entry("image.revealed", job, actor=actor, outcome="revealed",
                                 nsfw_score=verdict.score if verdict.flagged else None,
                                 detail=f"image {index + 1} to an admin"))
    state = (_("withheld by the image policy (NSFW score {score:.2f})").format(
        score=verdict.score) if verdict.action == "block" else _("not withheld"))
    text = _("Image {number} of job {job} by {user} ({prompt}), {state}: for your eyes "
             "only.").format(number=index + 1, job=view.code(job.id, 64),
                             user=view.user(job.requester.user_key),
                             prompt=view.code(job.request.prompt), state=state)
    name = f"imagine-{job.id[:8]}-{index + 1}.png"
    return AdminAnswer(text, files=(AdminFile(name, data),), detail=f"image {index + 1}")
