"""Starting, following up and cancelling jobs for Slack.

A command is recorded and submitted *before* the listener acks (`accept`: a few Redis
calls, no Slack call), so once Slack has its ack the job is in Redis and a front end that
dies right then loses nothing. The status message is posted after the ack (`show`); the
deliverer posts it itself if it needs it first (`status_message`), so the images always go
into its thread. A refusal (queue full, over the per-user limit) is the ack's own text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bots.admin import paused_wait
from bots.errors import PromptError
from bots.followups import FollowUpLimits, canonical_action, press
from bots.permissions import Role, cancel_refusal, may_cancel, slack_role
from bots.region import RegionLinks
from bots.slack import text as say
from bots.slack.access import SlackAccess
from bots.slack.client import ChannelUnreachable, error_code, translate
from bots.slack.status import StatusGuard
from bots.slack.status_message import ensure_status_message
from bots.status_lock import StatusBusy
from generator.request import ImageRequest
from settings import Settings
from settings.errors import ImagineError
from settings.i18n import N_, SOURCE_LOCALE, _, current_locale
from tasks.core.delivery import PermanentDeliveryError
from tasks.core.jobs import EXTRA_LOCALE, Job, JobStatus, Requester
from tasks.core.queue import JobQueue, Submitted, format_wait
from tasks.names import SLACK_EVENT_KEY

log = logging.getLogger(__name__)

# How long the front end waits for a concurrent edit of the status message before leaving
# its post (or a "cancelling…" edit) to the deliverer, whose edits are newer anyway.
QUEUED_EDIT_WAIT = 5.0
EVENT_SECONDS = 3600  # Slack retries an event three times within about five minutes


@dataclass(frozen=True)
class Refusal:
    """Why nothing was queued, in Slack's markup, for the requester's eyes only."""

    text: str


@dataclass(frozen=True)
class Origin:
    """Where a request came from: the user, the channel, the thread to answer in."""

    user: str
    channel: str
    thread: str = ""  # "" → the status message starts the thread
    response_url: str = ""
    team: str = ""


class SlackJobs:
    def __init__(self, settings: Settings, queue: JobQueue, client: WebClient) -> None:
        self.settings = settings
        self.queue = queue
        self.client = client
        self.guard = StatusGuard(queue.redis, settings.job_ttl)
        self.access = SlackAccess(settings, queue, client)

    # --- the way in ---------------------------------------------------------------------
    def first_delivery(self, event_id: str) -> bool:
        """False for an event Slack sends again (it retries when an ack seemed late)."""
        if not event_id:
            return True
        return bool(self.queue.redis.set(SLACK_EVENT_KEY.format(event_id), "1", nx=True,
                                          ex=EVENT_SECONDS))

    def accept(self, request: ImageRequest, origin: Origin, *, action: str | None = None,
               index: int | None = None, parent: str | None = None,
               notes: tuple[str, ...] = (), job_id: str | None = None) -> Submitted | Refusal:
        """Record and submit the job: Redis only, no Slack call, so it runs before the ack and
        a front end that dies right after acking has lost nothing."""
        requester = self.admit(origin, index, request.prompt)
        if isinstance(requester, Refusal):
            return requester
        job = Job(requester=requester, request=request, parent=parent, action=action,
                  notes=list(notes))
        if job_id:  # fixed when the prompt was held, so picking it up twice queues it once
            job.id = job_id
        try:
            return self.queue.submit(job)
        except ImagineError as exc:
            return Refusal(say.escape(exc.message))
        except Exception as exc:  # Redis or the broker is down: say so, nothing is queued
            log.exception("submitting a Slack job failed")
            return Refusal(_("Nothing was queued: the queue is unreachable ({name}); try again "
                             "in a minute.").format(name=type(exc).__name__))

    def admit(self, origin: Origin, index: int | None = None,
              prompt: str = "") -> Requester | Refusal:
        """The requester of a job from `origin`, or why this user may not use the bot here
        (channels, user groups, DMs: audited). Before any job is built, for buttons too."""
        requester, complete = self.access.requester(_requester(origin, index))
        message = self.access.refusal(requester, prompt, complete=complete)
        return requester if message is None else Refusal(message)

    def show(self, submitted: Submitted) -> Job:
        """After the ack: post the status message with the place in line, unless the
        deliverer was first. When Slack refuses the channel for good the job is cancelled
        and the requester told; when Slack is only busy, the deliverer posts it later."""
        job = submitted.job
        origin = _origin(job)
        head = say.headline(origin.user, job.request, job.action, _index(job.requester.extra))
        line = say.queued_line(submitted.position, paused_wait(self.queue)
                               or format_wait(submitted.eta_seconds))
        try:
            return ensure_status_message(self.client, self.queue.jobs, self.guard, job,
                                         say.status_text(head, line), wait=QUEUED_EDIT_WAIT)
        except SlackApiError as exc:
            problem = translate(exc)
            if not isinstance(problem, PermanentDeliveryError):
                log.warning("status message of job %s not posted yet (%s); the deliverer "
                            "will post it", job.id, problem)
                return job
            self.queue.cancel(job.id)
            if isinstance(problem, ChannelUnreachable):
                self.tell(origin, say.not_in_channel_text())
            else:
                log.error("posting a status message in %s failed: %s", origin.channel, exc)
                self.tell(origin, _("Slack refused my message ({exc}); the job was cancelled.").format(
                                      exc=say.escape(error_code(exc))))
        except (SlackClientError, OSError, StatusBusy) as exc:
            log.warning("status message of job %s not posted yet (%s); the deliverer will "
                        "post it", job.id, exc)
        return job

    def accept_follow_up(self, value: say.ActionValue, origin: Origin) -> Submitted | Refusal:
        """A button under a finished job (value.action is the button's name): a new job
        answered in the same thread (recorded before the ack, like a command)."""
        parent = self.queue.jobs.find(value.job_id)
        if parent is None:
            return Refusal(_(TOO_OLD))
        try:
            action = canonical_action(value.action)
            request = press(parent, value.index, value.action,
                            FollowUpLimits.from_settings(self.settings))
        except PromptError as exc:
            return Refusal(say.escape(exc.message))
        return self.accept(request, _in_thread_of(parent, origin), action=action,
                           index=value.index, parent=parent.id)

    def region_link(self, value: say.ActionValue, origin: Origin) -> None:
        """Vary (Region): a one-time link to the mask editor, shown to the presser only; the
        job it queues is delivered in the parent's thread like any follow-up."""
        parent = self.queue.jobs.find(value.job_id)
        if parent is None:
            self.tell(origin, _(TOO_OLD))
            return
        links = RegionLinks(self.queue.redis, self.settings)
        index = value.index or 0
        requester = self.admit(_in_thread_of(parent, origin), index)
        if isinstance(requester, Refusal):
            self.tell(origin, requester.text)
            return
        try:
            url = links.issue(parent, index, requester)
        except ImagineError as exc:
            self.tell(origin, say.escape(exc.message))
            return
        except Exception as exc:  # Redis is away: nothing was issued
            log.exception("issuing a Vary (Region) link failed")
            self.tell(origin, _("No link was made: the queue is unreachable ({name}); try "
                                "again in a minute.").format(name=type(exc).__name__))
            return
        self.tell(origin, _("<{url}|Paint the part of image {number} to redraw>: the link "
                            "works once, for {links_lifetime}, and only you can see it.").format(
                              url=url, number=index + 1, links_lifetime=links.lifetime))

    def cancel(self, job_id: str, origin: Origin) -> None:
        """Cancel a queued or running job: the requester's own, or anyone's for a moderator."""
        job = self.queue.jobs.find(job_id)
        if job is None or job.status.finished:
            self.tell(origin, _("That job has already finished."))
            return
        if not may_cancel(job, origin.user, lambda: self.role(origin.user)):
            self.tell(origin, cancel_refusal(f"<@{job.requester.user}>"))
            return
        job = self.queue.cancel(job_id)
        head = say.headline(job.requester.user, job.request, job.action,
                            _index(job.requester.extra))
        if job.status is JobStatus.cancelled:
            text = say.status_text(head, _("cancelled before it started"))
            self.guard.final(job.id, lambda: self._edit(job, text))
        elif job.status is JobStatus.running:
            text = say.status_text(head, _("cancelling…"))
            self.guard.edit(job.id, lambda: self._edit(job, text), wait=QUEUED_EDIT_WAIT)

    def role(self, user: str) -> Role:
        """IMAGINE_SLACK_ADMINS, else what users.info says (needs the users:read scope)."""

        def user_info(user_id: str) -> dict[str, Any]:
            try:
                return dict(self.client.users_info(user=user_id)["user"])
            except SlackApiError as exc:
                hint = " (reinstall the app with the users:read scope)" if error_code(
                    exc) == "missing_scope" else ""
                log.warning("users.info for %s failed: %s%s", user_id, error_code(exc), hint)
            except SlackClientError as exc:
                log.warning("users.info for %s failed: %s", user_id, exc)
            return {}  # unknown: treated as a member, never as a moderator

        return slack_role(user, self.settings.slack_admins, user_info)

    # --- talking to Slack ---------------------------------------------------------------
    def _edit(self, job: Job, text: str) -> Any:
        try:
            return self.client.chat_update(channel=job.requester.channel,
                                           ts=job.requester.message, text=text,
                                           blocks=say.text_blocks(text))
        except SlackClientError as exc:
            log.warning("could not edit the status message of job %s: %s", job.id, exc)
            return None

    def tell(self, origin: Origin, text: str) -> None:
        """An ephemeral note to the requester: via response_url, else chat.postEphemeral."""
        try:
            if origin.response_url:
                WebhookClient(origin.response_url, timeout=10).send(
                    text=text, response_type="ephemeral", replace_original=False)
            else:
                self.client.chat_postEphemeral(channel=origin.channel, user=origin.user,
                                               text=text, thread_ts=origin.thread or None)
        except (SlackClientError, OSError) as exc:
            log.warning("could not tell %s: %s (%s)", origin.user, text, exc)


TOO_OLD = N_("That job is too old: its record has expired. Run the prompt again.")


def _requester(origin: Origin, index: int | None) -> Requester:
    extra = {"response_url": origin.response_url, "team": origin.team}
    if current_locale() != SOURCE_LOCALE:  # set from users.info (bots.slack.locale)
        extra[EXTRA_LOCALE] = current_locale()
    if index is not None:
        extra["index"] = str(index)
    return Requester(platform="slack", user=origin.user, channel=origin.channel,
                     thread=origin.thread, extra=extra)


def _in_thread_of(parent: Job, origin: Origin) -> Origin:
    """Where a follow-up of `parent` pressed by `origin.user` is answered: the parent's thread."""
    return Origin(user=origin.user, channel=parent.requester.channel or origin.channel,
                  thread=parent.requester.thread or origin.thread,
                  response_url=origin.response_url, team=origin.team)


def _index(extra: dict[str, str]) -> int | None:
    value = extra.get("index", "")
    return int(value) if value.isdigit() else None


def _origin(job: Job) -> Origin:
    requester = job.requester
    return Origin(user=requester.user, channel=requester.channel, thread=requester.thread,
                  response_url=requester.extra.get("response_url", ""),
                  team=requester.extra.get("team", ""))
