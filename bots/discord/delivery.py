"""Posting jobs back to Discord from the deliver worker, over the REST API only.

Where things go: while the job's interaction token is valid (15 minutes), results are a
followup on the interaction's webhook and the status message is the interaction's original
response; after that (a long queue), results are a normal reply in the channel and the
status message is edited by its id. Mention jobs have no token and always use the channel.

Each step is one API call wrapped in `ctx.once`, and channel posts carry a nonce with
`enforce_nonce`, so a retried delivery never posts the same images twice.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

from bots.discord.formatting import (
    attachment_limit,
    cancel_components,
    finished_text,
    no_pings,
    nonce,
    progress_text,
    result_components,
    result_content,
    token_valid,
)
from bots.discord.previews import StatusPreviews
from bots.discord.rest import DiscordApiError, DiscordRest, SharedWaits, UploadFile
from bots.limits import Limits
from bots.presentation import shorten
from bots.safety_view import shown, withheld_lines
from settings import Settings
from settings.i18n import _
from tasks.core.connection import redis_client
from tasks.core.delivery import DeliveryContext
from tasks.core.jobs import Job, JobStatus, Requester

log = logging.getLogger(__name__)

PREVIEW_QUALITIES = (85, 70)
# Discord shows an attachment whose name starts with this blurred until it is clicked.
SPOILER_PREFIX = "SPOILER_"
PREVIEW_MIN_SIDE = 64


class DiscordDelivery:
    """The `discord` platform adapter of tasks.core.delivery."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        token = settings.discord_token.get_secret_value() if settings.discord_token else None
        client = redis_client(settings)
        self.rest = DiscordRest(settings.discord_api_url, token, waits=SharedWaits(client))
        self.limits = Limits.from_settings(settings)
        self.previews = StatusPreviews(client, settings.job_ttl, settings.job_timeout + 60)

    # --- the adapter protocol ----------------------------------------------------------
    def deliver_result(self, ctx: DeliveryContext) -> None:
        """Post the images (then drop the status message), or show why there are none."""
        job = ctx.job
        self.previews.finish(job.id)  # no progress edit (nor preview) after this point
        if job.status is JobStatus.done and job.images:
            ctx.once("post", lambda: self._post_images(ctx))
            ctx.once("status", lambda: self._quietly(lambda: self._delete_status(job.requester)))
        else:
            ctx.once("status", lambda: self._show_final(job))

    def deliver_progress(self, ctx: DeliveryContext, position: int | None) -> None:
        """Edit the status message with the queue position or the drawing progress, and
        the latest live preview when the message does not show it yet (bots.discord.previews)."""
        job = ctx.job
        body: dict[str, Any] = {"content": progress_text(job, position), "allowed_mentions":
                                no_pings(job.requester), "components": cancel_components(job.id)}
        upload = self.previews.pending(job)
        files = [upload.file] if upload else []
        if upload:
            body = upload.attach(body)
        elif self.previews.stale(job):
            body["attachments"] = []

        def edit() -> None:
            try:
                edited = self._edit_status(job.requester, body, files)
            except DiscordApiError as exc:
                log.info("status message not updated: %s", exc)
                return
            if edited and (upload or "attachments" in body):
                self.previews.mark_shown(job.id, upload.version if upload else 0)

        self.previews.edit(job.id, edit)

    # --- results -------------------------------------------------------------------------
    def _post_images(self, ctx: DeliveryContext) -> None:
        job = ctx.job
        files, notes = self._attachments(ctx)
        body: dict[str, Any] = {
            "content": result_content(job, self.limits, notes),
            "allowed_mentions": no_pings(job.requester),
            "components": result_components(job, enhance=self.limits.enhance),
            "attachments": [{"id": i, "filename": f.filename,
                             "description": shorten(job.request.prompt, 1024)}
                            for i, f in enumerate(files)],
        }
        requester = job.requester
        if token_valid(requester):
            app, token = requester.extra["application_id"], requester.extra["interaction_token"]
            try:
                self.rest.request("POST", f"/webhooks/{app}/{token}?wait=true", body, files,
                                  auth=False)
                return
            except DiscordApiError as exc:
                if not exc.gone:
                    raise
                log.info("job %s: interaction token no longer valid, replying in the channel",
                         job.id)
        self._reply_in_channel(job, body, files)

    def _reply_in_channel(self, job: Job, body: dict[str, Any], files: list[UploadFile]) -> None:
        requester = job.requester
        # Reply to the person's message (mentions), else to our status message (commands).
        target = requester.thread or requester.message
        if target:
            body = {**body, "message_reference": {"message_id": target,
                                                  "fail_if_not_exists": False}}
        body = {**body, "nonce": nonce(job.id, "post"), "enforce_nonce": True}
        self.rest.request("POST", f"/channels/{requester.channel}/messages", body, files)

    def _attachments(self, ctx: DeliveryContext) -> tuple[list[UploadFile], list[str]]:
        """PNGs as they are; one over its share of the upload limit becomes a JPEG + link."""
        job = ctx.job
        limit = attachment_limit(job.requester, self.settings.discord_attachment_limit)
        budget = max(1, limit // max(1, len(job.images)))
        files: list[UploadFile] = []
        notes: list[str] = []
        base = self.settings.public_url.rstrip("/")
        # Blocked images are not attached; spoilered ones are, as Discord spoilers (#15).
        for image in shown(job, blur=False):
            index, name, seed = image.index, image.name, image.seed
            prefix = SPOILER_PREFIX if image.spoiler else ""
            data = ctx.storage.read(name)
            if len(data) <= budget:
                files.append(UploadFile(f"{prefix}imagine-{seed}.png", data, "image/png"))
                continue
            # <…>: no embed of the link; a spoilered image's link hides behind a spoiler.
            link = f"<{base}/images/{name}.png>"
            if image.spoiler:
                link = f"||{link}||"
            preview = jpeg_preview(data, budget)
            if preview is not None:
                files.append(UploadFile(f"{prefix}imagine-{seed}-preview.jpg", preview,
                                        "image/jpeg"))
                notes.append(_("Image {number} is a preview; full size: {link}").format(
                                 number=index + 1, link=link))
            else:
                notes.append(_("Image {number} is too large to upload: {link}").format(
                                 number=index + 1, link=link))
        return files, notes + withheld_lines(job, blur=False)

    # --- the status message ------------------------------------------------------------
    def _show_final(self, job: Job) -> None:
        # No attachments: a live preview the message showed goes with the progress.
        body = {"content": finished_text(job), "allowed_mentions": no_pings(job.requester),
                "components": [], "attachments": []}
        if self._edit_status(job.requester, body):
            return
        # No status message left to edit: say it in the channel instead.
        self._reply_in_channel(job, {k: v for k, v in body.items() if k != "components"}, [])

    def _edit_status(self, requester: Requester, body: dict[str, Any],
                     files: list[UploadFile] | None = None) -> bool:
        """Edit the status message (multipart when `files`); False when there is none we
        can reach."""
        if token_valid(requester):
            app, token = requester.extra["application_id"], requester.extra["interaction_token"]
            try:
                self.rest.request("PATCH", f"/webhooks/{app}/{token}/messages/@original", body,
                                  files, auth=False)
                return True
            except DiscordApiError as exc:
                if not exc.gone or not requester.message:
                    raise
        if not requester.message:
            return False
        self.rest.request("PATCH", f"/channels/{requester.channel}/messages/{requester.message}",
                          body, files)
        return True

    def _delete_status(self, requester: Requester) -> None:
        if token_valid(requester):
            app, token = requester.extra["application_id"], requester.extra["interaction_token"]
            try:
                self.rest.request("DELETE", f"/webhooks/{app}/{token}/messages/@original",
                                  auth=False)
                return
            except DiscordApiError as exc:
                if not exc.gone or not requester.message:
                    raise
        if requester.message:
            self.rest.request("DELETE",
                              f"/channels/{requester.channel}/messages/{requester.message}")

    @staticmethod
    def _quietly(action: Callable[[], object]) -> None:
        """Status edits are cosmetic: a deleted message or a missing permission is not fatal."""
        try:
            action()
        except DiscordApiError as exc:
            log.info("status message not updated: %s", exc)


def jpeg_preview(png: bytes, budget: int) -> bytes | None:
    """A JPEG of the image under `budget` bytes, shrinking it as needed; None if impossible."""
    from PIL import Image  # noqa: PLC0415 - only the rare oversized image needs it

    with Image.open(io.BytesIO(png)) as opened:
        image = opened.convert("RGB")
    while min(image.size) >= PREVIEW_MIN_SIDE:
        for quality in PREVIEW_QUALITIES:
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= budget:
                return out.getvalue()
        image = image.resize((max(1, image.width * 7 // 10), max(1, image.height * 7 // 10)),
                             Image.Resampling.LANCZOS)
    return None
