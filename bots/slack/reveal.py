"""Show original (#15): the requester of a result whose images Slack shows blurred gets the
originals in a direct message with the app; anyone else pressing it is told, for their
eyes only, that it is not theirs to see.

The originals never go into the channel: a DM (conversations.open, then files_upload_v2
into it, as the deliverer uploads results) reaches that one person wherever they are. Each
reveal is recorded in the audit trail (image.revealed).
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackClientError

from bots.safety_view import may_reveal, nothing_to_reveal, reveal_refusal, spoilered
from bots.slack import text as say
from bots.slack.jobs import TOO_OLD, Origin, SlackJobs
from settings.i18n import _, ngettext
from tasks.core.jobs import Job
from tasks.core.storage import ImageStore, open_storage
from tasks.policy.audit import AuditLog
from tasks.policy.gate import job_entry

log = logging.getLogger(__name__)


class SlackReveal:
    """What the Show original button does (after the ack, on a listener thread)."""

    def __init__(self, jobs: SlackJobs, storage: ImageStore | None = None) -> None:
        self.jobs = jobs
        self.storage = storage or open_storage(jobs.settings)
        self.audit = AuditLog(jobs.settings, jobs.queue.redis)

    def press(self, value: say.ActionValue, origin: Origin) -> None:
        job = self.jobs.queue.jobs.find(value.job_id)
        if job is None:
            self.jobs.tell(origin, _(TOO_OLD))
            return
        if not may_reveal(job, origin.user):
            self.jobs.tell(origin, reveal_refusal())
            return
        indexes = spoilered(job)
        if not indexes:
            self.jobs.tell(origin, nothing_to_reveal())
            return
        try:
            self._send(job, indexes, origin.user)
        except (SlackClientError, OSError) as exc:
            log.warning("could not send the originals of job %s to %s: %s", job.id,
                        origin.user, exc)
            self.jobs.tell(origin, _("The originals could not be sent to you right now; "
                                     "press Show original again in a minute."))
            return
        for index in indexes:
            self.audit.record(job_entry("image.revealed", job, outcome="revealed",
                                        actor=job.requester.user_key,
                                        nsfw_score=job.verdict(index).score,
                                        detail=f"image {index + 1} to the requester"))
        self.jobs.tell(origin, ngettext(
            "The original image is in your direct messages with me.",
            "The original images are in your direct messages with me.", len(indexes)))

    def _send(self, job: Job, indexes: list[int], user: str) -> None:
        """The originals into the requester's DM with the app."""
        client = self.jobs.client
        channel = client.conversations_open(users=user)["channel"]["id"]
        seeds = job.seeds or [job.request.seed or 0] * len(job.images)
        uploads = [{"file": self.storage.read(job.images[i]),
                    "filename": f"imagine-{seeds[i]}.png", "title": f"seed {seeds[i]}"}
                   for i in indexes]
        comment = _("The original of {prompt}, shown blurred in the channel: for your eyes "
                    "only.").format(prompt=say.code(job.request.prompt))
        client.files_upload_v2(file_uploads=uploads, channel=channel, initial_comment=comment)
