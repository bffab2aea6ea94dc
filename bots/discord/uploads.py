"""Images people hand the Discord bot: the picture of an image prompt, a PNG to recall.

Attachments are checked against IMAGINE_MAX_UPLOAD_BYTES before a byte is downloaded (Discord
tells the size), read from Discord's CDN on the event loop (aiohttp), and everything
blocking after that (decoding, storage, Redis) runs in a thread: the gateway heartbeat never
waits on an image.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import discord
import redis

from bots.errors import PromptError
from bots.followups import FollowUpLimits
from bots.image_prompts import image_prompt, split_image_urls
from bots.limits import Limits
from bots.presentation import shorten
from bots.recall import recall_png
from generator.request import ImageRequest
from settings import Settings
from settings.i18n import _
from tasks.core.recalls import RecallStore
from tasks.core.storage import ImageStore

CONTENT_LIMIT = 2000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


class UploadError(PromptError):
    """An attachment that cannot be used: too large, or not downloadable."""


def is_image(attachment: discord.Attachment) -> bool:
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    return kind.startswith("image/") or attachment.filename.lower().endswith(IMAGE_SUFFIXES)


def first_image(attachments: Sequence[discord.Attachment]) -> discord.Attachment | None:
    return next((a for a in attachments if is_image(a)), None)


def needs_image_prompt(text: str, attachment: discord.Attachment | None) -> bool:
    """Whether a prompt goes through the image-prompt reader (an image, or a URL first)."""
    return attachment is not None or bool(split_image_urls(text)[0])


def second_image(attachments: Sequence[discord.Attachment]) -> discord.Attachment | None:
    """A message's second image: with --cn, its control image."""
    images = [a for a in attachments if is_image(a)]
    return images[1] if len(images) > 1 else None


def _megabytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{-(-size // 1024)} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def check_size(attachment: discord.Attachment, max_bytes: int) -> None:
    """UploadError, before anything is downloaded, for an attachment over the limit."""
    if attachment.size > max_bytes:
        raise UploadError(_("{name} is {size}: this bot takes images up to "
                            "{limit}; send a smaller one.").format(
                              name=shorten(attachment.filename, 80),
                              size=_megabytes(attachment.size),
                              limit=_megabytes(max_bytes)))


async def read_attachment(attachment: discord.Attachment, max_bytes: int) -> bytes:
    """The attachment's bytes; UploadError if it is too large or cannot be downloaded."""
    check_size(attachment, max_bytes)
    try:
        data = await attachment.read()
    except discord.HTTPException as exc:
        raise UploadError(_("Could not download {name} from Discord ({status}); attach "
                            "it again.").format(
                              name=shorten(attachment.filename, 80), status=exc.status)) from None
    if len(data) > max_bytes:  # the size Discord told us was wrong
        raise UploadError(_("{name} is {size}: this bot takes images up to "
                            "{limit}; send a smaller one.").format(
                              name=shorten(attachment.filename, 80),
                              size=_megabytes(len(data)), limit=_megabytes(max_bytes)))
    return data


@dataclass(frozen=True)
class Uploads:
    """What reading images needs: settings, limits, storage and Redis (for recall ids)."""

    settings: Settings
    limits: Limits
    storage: ImageStore
    redis: redis.Redis

    async def image_prompt(self, text: str, attachment: discord.Attachment | None,
                           second: discord.Attachment | None = None,
                           control: discord.Attachment | None = None
                           ) -> tuple[ImageRequest, list[str]]:
        """The request of a prompt with an image (attached, or a URL first) and the notes
        the user must be told; PromptError/ImagineError with a one-line reason. `second`:
        a message's second image (with --cn, its control image); `control`: /imagine's
        control option."""
        limit = self.settings.max_upload_bytes
        data, more, control_data = [None if file is None else await read_attachment(file, limit)
                                    for file in (attachment, second, control)]
        prepared = await asyncio.to_thread(
            image_prompt, text, self.limits, self.settings, self.storage, attachment=data,
            attachments=() if more is None else (more,), control=control_data)
        return prepared.request, list(prepared.notes)

    async def recall(self, attachment: discord.Attachment) -> tuple[str, str]:
        """(the message, the recall id for Run again) for an image (A1111 parameters in a
        PNG, JPEG or WebP); NoParameters (a PromptError) when it records none."""
        data = await read_attachment(attachment, self.settings.max_upload_bytes)

        def recall() -> tuple[str, str]:
            recalled = recall_png(data, self.limits, FollowUpLimits.from_settings(self.settings))
            recall_id = RecallStore(self.redis, self.settings.job_ttl).save(recalled.request)
            return recall_text(attachment.filename, recalled.text, recalled.notes), recall_id

        return await asyncio.to_thread(recall)


def recall_text(filename: str, text: str, notes: Sequence[str]) -> str:
    """The parameters as prompt text in a code span, within Discord's 2000 characters."""
    head = _("🔎 **{name}** was drawn with:\n").format(name=_escaped(shorten(filename, 80)))
    tail = "".join(f"\n{note}" for note in notes)
    room = CONTENT_LIMIT - len(head) - len(tail) - 2
    return f"{head}`{shorten(_code(text), room)}`{tail}"


def _code(text: str) -> str:
    # A backtick would end the code span early; a lookalike keeps the text readable.
    return text.replace("`", "ˋ")


_MARKDOWN = re.compile(r"([\\*_~|>\[\]()<`])")


def _escaped(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)
