"""The status message of a Slack job: posted once, by whichever process needs it first.

The front end records and submits a job before it acknowledges Slack, and posts the job's
status message after the ack. A worker may need the message sooner: a tiny job finishes
first, or the front end died between its ack and its post. So the front end and the
deliverer both go through `ensure_status_message`, which posts under the job's status lock
and records the message's ts on the job before releasing the lock: whoever comes second
finds it. A process killed after Slack accepted a post but before the ts was recorded (one
Redis call later) leaves that message behind and the next one posts another; images are
never posted twice, their delivery steps are marked done per job.
"""

from __future__ import annotations

from slack_sdk import WebClient

from bots.slack import text as say
from bots.slack.status import StatusGuard
from tasks.core.jobs import Job, JobStore


def ensure_status_message(client: WebClient, jobs: JobStore, guard: StatusGuard, job: Job,
                          text: str, *, wait: float) -> Job:
    """The job with its status message: the one already posted, or one posted now showing
    `text` and a Cancel button. Slack's errors are raised as they come; StatusBusy when
    another process holds the message for longer than `wait` seconds."""
    if job.requester.message:
        return job

    def find() -> Job | None:
        current = jobs.get(job.id)
        return current if current.requester.message else None

    def post() -> Job:
        requester = job.requester
        response = client.chat_postMessage(
            channel=requester.channel, thread_ts=requester.thread or None, text=text,
            blocks=say.cancel_blocks(text, job.id), unfurl_links=False, unfurl_media=False)
        ts = str(response["ts"])

        def record(current: Job) -> Job:
            # A slash command's status message starts the thread the images go into.
            where = {"message": ts, "thread": current.requester.thread or ts}
            return current.model_copy(
                update={"requester": current.requester.model_copy(update=where)})

        return jobs.update(job.id, record)

    return guard.first(job.id, find, post, wait=wait)
