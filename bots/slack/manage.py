"""Report and Delete under a Slack result (bots/reports.py says who may do what).

Report posts to IMAGINE_SLACK_REPORT_CHANNEL: who reported, whose result, the prompt, a
permalink to the result and the image itself. Delete removes the result message (chat.delete)
and the files the deliverer uploaded (files.delete; their ids are kept in the job's
requester as `files` when uploaded), then the stored images (tasks/policy/removal.py).
Each answer is ephemeral, to the presser only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from slack_sdk.errors import SlackApiError, SlackClientError

from bots.followups import DELETE, REPORT
from bots.permissions import may_delete
from bots.reports import Reports, delete_refusal, deleted_text, report_text, thanks, too_old_text
from bots.slack import text as say
from bots.slack.jobs import Origin, SlackJobs
from tasks.core.jobs import Job
from tasks.core.storage import open_storage
from tasks.errors import JobNotFound
from tasks.policy.removal import remove_job

log = logging.getLogger(__name__)

MANAGED = (REPORT, DELETE)
FILES_EXTRA = "files"  # requester.extra: ids of the files the deliverer uploaded, comma-separated


class SlackManage:
    def __init__(self, jobs: SlackJobs) -> None:
        self.jobs = jobs
        self.settings = jobs.settings
        self.client = jobs.client
        self.storage = open_storage(jobs.settings)
        self.reports = Reports(jobs.settings, jobs.queue.redis)

    def handle(self, value: say.ActionValue, origin: Origin, message_ts: str = "") -> None:
        """A press of Report or Delete (after the ack); `message_ts`: the pressed message,
        when it is not the job's status message."""
        job = self.jobs.queue.jobs.find(value.job_id)
        if job is None:
            self.jobs.tell(origin, too_old_text())
        elif value.action == REPORT:
            self.report(job, value.index or 0, origin, message_ts)
        else:
            self.delete(job, origin, message_ts)

    def report(self, job: Job, index: int, origin: Origin, message_ts: str) -> None:
        channel = self.settings.slack_report_channel
        link = self._permalink(origin.channel, message_ts or job.requester.message)
        if self.reports.report(job, f"slack:{origin.user}", index, link) and channel:
            text = report_text(job, f"<@{origin.user}>", f"<@{job.requester.user}>", index, link)
            try:
                self._post_report(channel, job, index, text)
            except (SlackClientError, OSError) as exc:  # recorded in the audit all the same
                log.warning("report of job %s not posted to %s: %s", job.id, channel, exc)
        self.jobs.tell(origin, thanks(bool(channel)))

    def delete(self, job: Job, origin: Origin, message_ts: str) -> None:
        if not may_delete(job, origin.user, lambda: self.jobs.role(origin.user)):
            self.jobs.tell(origin, delete_refusal(f"<@{job.requester.user}>"))
            return
        channel = job.requester.channel or origin.channel
        for ts in dict.fromkeys(t for t in (message_ts, job.requester.message) if t):
            self._quietly("chat.delete", partial(self.client.chat_delete, channel=channel, ts=ts))
        for file_id in filter(None, job.requester.extra.get(FILES_EXTRA, "").split(",")):
            self._quietly("files.delete", partial(self.client.files_delete, file=file_id))
        try:
            remove_job(self.settings, self.jobs.queue.redis, self.storage, job.id,
                       f"slack:{origin.user}")
        except JobNotFound:
            pass  # expired meanwhile: its messages are gone, nothing else is left
        self.jobs.tell(origin, deleted_text())

    def _post_report(self, channel: str, job: Job, index: int, text: str) -> None:
        if index < len(job.images) and self.storage.exists(job.images[index]):
            self.client.files_upload_v2(
                channel=channel, initial_comment=text, filename=f"reported-{job.id}.png",
                file=self.storage.read(job.images[index]))
        else:
            self.client.chat_postMessage(channel=channel, text=text, unfurl_links=False)

    def _permalink(self, channel: str, ts: str) -> str:
        if not channel or not ts:
            return ""
        try:
            return str(self.client.chat_getPermalink(channel=channel, message_ts=ts)
                       .get("permalink") or "")
        except (SlackClientError, OSError):
            return ""

    @staticmethod
    def _quietly(what: str, call: Callable[[], object]) -> None:
        """A message or file already gone (or one the bot may not delete) is not fatal."""
        try:
            call()
        except SlackApiError as exc:
            log.info("%s refused: %s", what, exc.response.get("error"))
        except (SlackClientError, OSError) as exc:
            log.warning("%s failed: %s", what, exc)
