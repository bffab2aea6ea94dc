"""Delivering jobs to Slack: images into the status message's thread, then the final edit.

Each step is one Slack operation run through `ctx.once`, so a redelivered task (a crash,
a `ratelimited` retry) never uploads twice: upload (files_upload_v2: getUploadURLExternal,
the bytes, completeUploadExternal), then the status message's final text and buttons.
A job whose status message the front end has not posted yet (it acks before posting, and
may have died in between) gets it posted here first, once (`status_message`).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bots.grammar import format_request
from bots.language_view import language_lines
from bots.limits import Limits
from bots.safety_view import shown, withheld_lines
from bots.slack import text as say
from bots.slack.client import ChannelUnreachable, delivery_errors, error_code, web_client
from bots.slack.previews import preview_block
from bots.slack.status import StatusGuard
from bots.slack.status_message import ensure_status_message
from bots.status_lock import StatusBusy
from settings import Settings
from settings.i18n import _
from tasks.core.delivery import DeliveryContext, RateLimited, TransientDeliveryError
from tasks.core.jobs import Job, JobStatus, JobStore

log = logging.getLogger(__name__)


class SlackDelivery:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = web_client(settings)
        self.limits = Limits.from_settings(settings)

    # --- the adapter protocol -------------------------------------------------------------
    def deliver_result(self, ctx: DeliveryContext) -> None:
        """Upload the images into the thread, then turn the status message into the result."""
        if ctx.job.status is JobStatus.cancelled and not ctx.job.requester.message:
            return  # cancelled before it was ever shown: the front end told the requester
        job = ctx.job
        try:
            with delivery_errors():
                ctx.job = job = self._with_status_message(ctx, "finishing…", wait=30.0)
                text, blocks = self._final_message(job)
                if job.status is JobStatus.done and shown(job, blur=True):
                    ctx.once("upload", lambda: self._upload(ctx))
                guard = StatusGuard(ctx.redis, self.settings.job_ttl)
                ctx.once("status", lambda: guard.final(
                    job.id, lambda: self._show(job, text, blocks)))
        except StatusBusy as exc:
            raise TransientDeliveryError(str(exc)) from None
        except RateLimited as exc:  # the task retries after the delay; progress rests as long
            self._rest_progress(ctx, exc)
            raise
        except ChannelUnreachable as exc:
            ctx.once("unreachable", lambda: self._tell_unreachable(job))
            raise ChannelUnreachable(exc.error) from None

    def deliver_progress(self, ctx: DeliveryContext, position: int | None) -> None:
        """Edit the status message with the queue position or the step, paced (slack_status)."""
        job = ctx.job
        guard = StatusGuard(ctx.redis, self.settings.job_ttl)
        if not guard.progress_slot(job.id, job.requester.extra.get("team", "")):
            return
        if job.status is JobStatus.queued and position:
            line = say.queued_line(position, _("waiting"))
        else:
            line = job.phase or say.drawing_line(job.step, job.total_steps)
        text = say.status_text(self._head(job), line)
        blocks = say.cancel_blocks(text, job.id)
        image = preview_block(self.settings.public_url, job)
        if image is not None:  # under the progress text, above the Cancel button
            blocks.insert(1, image)
        try:
            with delivery_errors():
                if not job.requester.message:  # posted now with this progress, or skipped
                    try:
                        self._with_status_message(ctx, line, wait=0)
                    except StatusBusy:
                        pass
                    return
                guard.edit(job.id, lambda: self._progress_update(job, text, blocks))
        except RateLimited as exc:
            self._rest_progress(ctx, exc)
            raise

    def _progress_update(self, job: Job, text: str, blocks: list[dict[str, Any]]) -> None:
        requester = job.requester
        try:
            self.client.chat_update(channel=requester.channel, ts=requester.message, text=text,
                                    blocks=blocks)
        except SlackApiError as exc:
            # Slack could not fetch the preview (our web server was down, the preview
            # expired): the whole edit is refused, so show the progress without it.
            if error_code(exc) != "invalid_blocks" or not any(
                    b.get("type") == "image" for b in blocks):
                raise
            self.client.chat_update(channel=requester.channel, ts=requester.message, text=text,
                                    blocks=[b for b in blocks if b.get("type") != "image"])

    def _rest_progress(self, ctx: DeliveryContext, exc: RateLimited) -> None:
        """Slack rate-limited us: further progress edits in this workspace would be refused
        too and prolong the limit, so none are made until it is over."""
        StatusGuard(ctx.redis, self.settings.job_ttl).pause_progress(
            ctx.job.requester.extra.get("team", ""), exc.retry_after)

    # --- the steps ------------------------------------------------------------------------
    def _with_status_message(self, ctx: DeliveryContext, line: str, *, wait: float) -> Job:
        text = say.status_text(self._head(ctx.job), line)
        return ensure_status_message(self.client, JobStore(ctx.redis, self.settings.job_ttl),
                                     StatusGuard(ctx.redis, self.settings.job_ttl), ctx.job,
                                     text, wait=wait)

    def _head(self, job: Job) -> str:
        extra = job.requester.extra.get("index", "")
        return say.headline(job.requester.user, job.request, job.action,
                            int(extra) if extra.isdigit() else None)

    def _final_message(self, job: Job) -> tuple[str, list[dict[str, Any]]]:
        head = self._head(job)
        if job.status is JobStatus.done and job.images:
            text = say.with_notes(say.status_text(head, say.done_line(job.seeds, job.duration)),
                                  [*language_lines(job), *job.notes,
                                   *withheld_lines(job, blur=True)])
            return text, say.result_blocks(text, job, enhance=self.limits.enhance)
        if job.status is JobStatus.cancelled:
            text = say.status_text(head, _("cancelled: {reason}").format(
                reason=say.escape(job.error)) if job.error else _("cancelled"))
            return text, say.text_blocks(text)
        text = say.status_text(head, say.failed_line(job.error or _("no images were made")))
        return text, say.failed_blocks(text, job.id)

    def _upload(self, ctx: DeliveryContext) -> None:
        """The images, a spoilered one as its blurred copy (Show original sends the original
        to the requester alone), blocked ones not at all (#15)."""
        job = ctx.job
        requester = job.requester
        seeds = job.seeds or [job.request.seed or 0] * len(job.images)
        uploads = [say.upload_of(image, ctx.storage.read(image.name))
                   for image in shown(job, blur=True)]
        replay = format_request(job.request.with_seed(seeds[0]), self.limits)
        comment = say.upload_comment(self._head(job), seeds, job.request, replay,
                                     [*job.notes, *withheld_lines(job, blur=True)])
        uploaded = self.client.files_upload_v2(
            file_uploads=uploads, channel=requester.channel,
            thread_ts=requester.thread or requester.message or None, initial_comment=comment)
        ids = ",".join(str(f.get("id", "")) for f in uploaded.get("files") or [])
        if ids:  # Delete (bots/slack/manage.py) removes the files by their ids
            self._remember_files(ctx, job, ids)

    def _remember_files(self, ctx: DeliveryContext, job: Job, ids: str) -> None:
        """Note the uploaded files' ids on the job. The upload already happened: a failure
        here must not make the delivery fail (it would be retried and post the images twice),
        so it costs only Delete's removal of those files."""
        try:
            JobStore(ctx.redis, self.settings.job_ttl).update(job.id, lambda j: j.model_copy(
                update={"requester": j.requester.model_copy(
                    update={"extra": {**j.requester.extra, "files": ids}})}))
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("job %s: the ids of its Slack files were not recorded (%s)", job.id, exc)

    def _show(self, job: Job, text: str, blocks: list[dict[str, Any]]) -> None:
        requester = job.requester
        if requester.message:
            self.client.chat_update(channel=requester.channel, ts=requester.message, text=text,
                                    blocks=blocks)
        else:  # a job submitted without a status message: answer in its thread instead
            self.client.chat_postMessage(channel=requester.channel,
                                         thread_ts=requester.thread or None, text=text,
                                         blocks=blocks, unfurl_links=False, unfurl_media=False)

    def _tell_unreachable(self, job: Job) -> None:
        """The bot was removed from the channel: tell the requester how to invite it back."""
        text = say.not_in_channel_text()
        url = job.requester.extra.get("response_url", "")
        try:
            if url:
                WebhookClient(url, timeout=10).send(text=text, response_type="ephemeral",
                                                    replace_original=False)
            else:  # a direct message from the app reaches the user wherever they are
                self.client.chat_postMessage(channel=job.requester.user, text=text)
        except (SlackClientError, OSError) as exc:
            log.warning("could not tell %s that job %s cannot be delivered: %s",
                        job.requester.user, job.id, exc)
