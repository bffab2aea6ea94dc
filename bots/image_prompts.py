"""Image prompts: a prompt drawn from a user's image (attached, or an image URL first).

Every front end calls `image_prompt` with the prompt text and, when the platform sent a
file, its bytes; the image is read (a data URL, or an http(s) URL fetched through the
guarded outbound requests of `tasks.core.outbound`), checked and fitted by
`generator.source_images`, stored, and becomes an img2img request. Blocking: async callers
use asyncio.to_thread.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from bots.errors import PromptError
from bots.grammar import given_strength, parse
from bots.limits import Limits
from generator.request import ImageRequest
from generator.source_images import prepare_source
from settings import Settings
from tasks.core import outbound
from tasks.core.storage import Storage
from tasks.errors import OutboundTooLarge

# A leading word that is an image: an http(s) URL or a data URL, bare or in Slack's <…|…>.
_LEADING_URL = re.compile(r"\s*<?((?:https?://|data:image/)[^\s<>|]+)(?:\|[^>\s]*)?>?(?=\s|$)",
                          re.I)
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,",
                       re.I)
# What an image URL may answer with: an image type, or none said in particular.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True)
class Prepared:
    """The request a prompt (with or without an image) draws, and what to tell the user."""

    request: ImageRequest
    notes: tuple[str, ...]


def split_image_urls(text: str) -> tuple[list[str], str]:
    """(the image URLs that start the prompt, the rest of it), Midjourney style:
    `https://…/cat.png a cat in a hat` → (["https://…/cat.png"], "a cat in a hat")."""
    urls: list[str] = []
    rest = text
    while match := _LEADING_URL.match(rest):
        urls.append(match.group(1))
        rest = rest[match.end():]
    return urls, rest.strip()


def image_prompt(text: str, limits: Limits, settings: Settings, storage: Storage, *,
                 attachment: bytes | None = None) -> Prepared:
    """The request for `text`: img2img from the attached image or the URL that starts it
    (fitted to the prompt's area, stored), else plain txt2img. PromptError/ImagineError with
    a one-line reason."""
    urls, rest = split_image_urls(text)
    if len(urls) > 1:
        raise PromptError(f"The prompt starts with {len(urls)} image URLs: give one image "
                          "(one URL first, or one attachment).")
    if urls and attachment is not None:
        raise PromptError("Give the image either attached or as a URL first, not both.")
    if not urls and attachment is None:
        return Prepared(parse(text, limits), ())
    request = parse(rest, limits, image=True)
    data = attachment if attachment is not None else read_image_reference(settings, urls[0])
    return drawn_from(request, data, limits, settings, storage)


def drawn_from(request: ImageRequest, data: bytes, limits: Limits, settings: Settings,
               storage: Storage) -> Prepared:
    """A parsed request drawn from the image in `data` (checked, fitted, stored), at the
    --strength the request carries (given_strength), else IMAGE_PROMPT_STRENGTH."""
    # The image keeps its own shape; the prompt's size (default, --size or --ar) sets how
    # many pixels it may have. A smaller image is never enlarged.
    source = prepare_source(data, max_bytes=settings.max_upload_bytes,
                            max_pixels=min(request.width * request.height, limits.max_pixels))
    name = storage.put(source.png)
    return Prepared(request.from_image(name, source.width, source.height,
                                       given_strength(request)), source.notes)


def read_image_reference(settings: Settings, ref: str) -> bytes:
    """The bytes of an image given as a `data:image/…;base64,` URL or an http(s) URL (fetched
    under the outbound rules, at most IMAGINE_MAX_UPLOAD_BYTES). Not checked as an image:
    that is `generator.source_images`' job."""
    ref = ref.strip()
    if ref[:5].lower() == "data:":
        return _data_url_bytes(ref, settings.max_upload_bytes)
    if not re.match(r"https?://", ref, re.I):
        raise PromptError("An image must be an http(s) URL or a data:image/…;base64, URL, "
                          f"not {ref[:40]!r}.")
    limit = settings.max_upload_bytes
    try:
        response = outbound.request(
            "GET", ref, policy=outbound.OutboundPolicy.from_settings(settings),
            what="image", headers={"Accept": "image/*"}, max_bytes=limit,
            follow_redirects=True)
    except OutboundTooLarge:
        raise PromptError(f"The image at that URL is larger than {_mib(limit)} "
                          "(IMAGINE_MAX_UPLOAD_BYTES): link a smaller one.") from None
    if response.status != 200:
        raise PromptError(f"The image URL answered HTTP {response.status}: link an image "
                          "that opens without logging in.")
    kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not (kind.startswith("image/") or kind in _GENERIC_TYPES):
        raise PromptError(f"The image URL gave {kind}, not an image: link the image file "
                          "itself, not a page that shows it.")
    return response.body


def _data_url_bytes(ref: str, limit: int) -> bytes:
    match = _DATA_URL.match(ref)
    if not match or not match.group(3):
        raise PromptError("A data URL image must look like data:image/png;base64,… "
                          "(base64-encoded).")
    kind = (match.group(1) or "").lower()
    if not kind.startswith("image/"):
        raise PromptError(f"The data URL holds {kind or 'text'}, not an image: use "
                          "data:image/png;base64,… (or jpeg, webp, gif, bmp).")
    payload = ref[match.end():]
    # Checked before decoding: base64 is 4 characters for every 3 bytes.
    if len(payload) // 4 * 3 > limit + 3:
        raise PromptError(f"The image is larger than {_mib(limit)} "
                          "(IMAGINE_MAX_UPLOAD_BYTES): send a smaller one.")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise PromptError("The data URL's base64 is not valid: encode the image file again."
                          ) from None
    if len(data) > limit:
        raise PromptError(f"The image is larger than {_mib(limit)} "
                          "(IMAGINE_MAX_UPLOAD_BYTES): send a smaller one.")
    return data


def _mib(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count / 1024:g} KiB"
    return f"{count / (1024 * 1024):g} MiB"
