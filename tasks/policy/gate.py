"""What every job passes on its way into the queue (JobQueue.submit), whatever the front
end: the user is not banned, the prompt is not blocklisted, the user's daily quota has room.
Each refusal raises a PolicyRefusal with a message for the user and is recorded in the audit
trail with the rule that decided; an admitted job is recorded as submitted.

Who may use the bot where (channels, servers, roles, DMs) is the front ends' to check
before they build a job (tasks/policy/access.py): only they know those facts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from settings import Settings
from settings.i18n import _
from tasks.core.jobs import Job, JobStatus
from tasks.errors import AccessDenied, PolicyRefusal, PromptRefused
from tasks.policy.audit import AuditEntry, AuditLog
from tasks.policy.bans import Bans
from tasks.policy.blocklist import REFUSAL, Blocklist
from tasks.policy.quota import Quotas


class PolicyGate:
    def __init__(self, settings: Settings, client: redis.Redis,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.audit = AuditLog(settings, client)
        self.bans = Bans(client)
        self.blocklist = Blocklist(settings)
        self.quotas = Quotas(settings, client, clock)

    def admit(self, job: Job) -> Job:
        """The job, charged to its user's quota; PolicyRefusal (audited) when a rule refuses."""
        try:
            self._check_ban(job)
            self.check_prompt(job, job.request.prompt, job.request.negative_prompt)
            job = self.quotas.charge(job)
        except PolicyRefusal as refusal:
            self.refused(job, refusal)
            raise
        self.audit.record(job_entry("job.submitted", job, outcome="queued"))
        return job

    def check_prompt(self, job: Job, *texts: str) -> None:
        """PromptRefused when any of `texts` (prompt, negative prompt, their translation or
        enhancement) hits the blocklist; not audited here (admit and the worker do that)."""
        rule = self.blocklist.match(*texts)
        if rule is not None:
            raise PromptRefused(_(REFUSAL), rule=f"blocklist: {rule}")

    def refused(self, job: Job, refusal: PolicyRefusal) -> None:
        """Record that a rule refused `job` (the front ends call this for access refusals)."""
        self.audit.record(job_entry("policy.refused", job, outcome="refused",
                                    rule=refusal.rule, detail=refusal.message))

    def _check_ban(self, job: Job) -> None:
        if self.bans.find(job.requester.user_key) is not None:
            raise AccessDenied(_("You have been banned from using this bot by an admin."),
                               rule="banned")


def where(job: Job) -> str:
    """Where a job was asked for, as the audit trail names it."""
    requester = job.requester
    if requester.platform == "discord":
        guild = requester.extra.get("guild_id", "")
        return f"discord:{guild}/{requester.channel}" if guild else f"discord:{requester.channel}"
    return f"{requester.platform}:{requester.channel}" if requester.channel else ""


def job_entry(event: str, job: Job, **fields: object) -> AuditEntry:
    """An audit entry about `job`: who, where, what it asked for."""
    request = job.request
    values: dict[str, object] = {
        "event": event, "user": job.requester.user_key, "where": where(job), "job": job.id,
        "prompt": job.prompt_original or request.prompt,
        "negative": job.negative_original or request.negative_prompt,
        "model": request.model, "loras": [f"{lora.name}:{lora.weight:g}" for lora in request.loras],
        "operation": job.action or request.mode, **fields}
    return AuditEntry.model_validate(values)


def outcome_entry(job: Job) -> AuditEntry:
    """How a finished job ended (job.done, job.failed, job.cancelled), with the highest NSFW
    score of its images when they were classified."""
    scores = [verdict.score for verdict in job.verdicts]
    detail = job.error or ""
    if job.status is JobStatus.done:
        detail = f"{len(job.images)} image(s)" + (f" in {job.duration:.1f} s"
                                                 if job.duration is not None else "")
    return job_entry(f"job.{job.status.value}", job, outcome=job.status.value,
                     nsfw_score=max(scores) if scores else None, detail=detail)
