"""Image prompts: a prompt drawn from a user's image (attached, or an image URL first), and
the control image of a ControlNet (--cn).

Every front end calls `image_prompt` with the prompt text and, when the platform sent
files, their bytes; each image is read (a data URL, or an http(s) URL fetched through the
guarded outbound requests of `tasks.core.outbound`), checked and fitted by
`generator.source_images`, and stored. Which image is which: without --cn, the one image
is the image prompt (img2img); with --cn, one image is the control image, and of two the
first is the image prompt and the second the control image (URLs first, then files); a
control image the platform marks as such (Discord's `control` option, REST's
`control_image`, the CLI's --control) is always one. Blocking: async callers use
asyncio.to_thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from PIL import Image, ImageOps

from bots.errors import PromptError
from bots.grammar import given_strength, parse, parse_with_control
from bots.limits import Limits, size_for_ratio
from bots.model_flags import Control, needs_control_image
from generator.request import ImageRequest
from generator.source_images import prepare_source
from settings import Settings
from settings.i18n import N_, _
from tasks.core import outbound
from tasks.core.storage import ImageStore
from tasks.errors import OutboundTooLarge

# A leading word that is an image: an http(s) URL or a data URL, bare or in Slack's <…|…>.
_LEADING_URL = re.compile(r"\s*<?((?:https?://|data:image/)[^\s<>|]+)(?:\|[^>\s]*)?>?(?=\s|$)",
                          re.I)
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,",
                       re.I)
# What an image URL may answer with: an image type, or none said in particular.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class ImageSink(Protocol):
    """Where a prepared image goes, named by its content: Storage, or the CLI's dict."""

    def put(self, data: bytes) -> str: ...


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


def image_prompt(text: str, limits: Limits, settings: Settings, storage: ImageStore, *,
                 attachment: bytes | None = None, attachments: Sequence[bytes] = (),
                 control: bytes | None = None) -> Prepared:
    """The request for `text`: img2img from the attached image or the URL that starts it
    (fitted to the prompt's area, stored), else plain txt2img; with --cn, its control image
    too (see the module's docstring for which is which). `attachment` and `attachments` are
    the platform's files in order; `control` a file given as the control image.
    PromptError/ImagineError with a one-line reason."""
    files = [attachment] if attachment is not None else []
    files += attachments
    urls, rest = split_image_urls(text)
    if not urls and not files and control is None:
        return Prepared(parse(text, limits), ())
    request, cn = parse_with_control(rest, limits, image=True)
    given: list[str | bytes] = [*urls, *files]
    source, control_data = _roles(given, cn, control, bool(urls) and bool(files))
    if source is None:
        request = parse_with_control(rest, limits)[0]  # --strength without an image: refused
        prepared = Prepared(request, ())
    else:
        prepared = drawn_from(request, _bytes(settings, source), limits, settings, storage)
    if cn is None or control_data is None:
        return prepared
    return controlled(prepared, cn, _bytes(settings, control_data), limits, settings, storage,
                      keep_size=source is not None)


def _roles(given: list[str | bytes], cn: Control | None, control: bytes | None,
           mixed: bool) -> tuple[str | bytes | None, str | bytes | None]:
    """(the image prompt, the control image) among the given images (URLs, then files)."""
    if control is not None:
        if cn is None:
            raise _needs_cn()
        if len(given) > 1:
            raise PromptError(_("{count} images came with the control image: give one "
                                "image prompt at most.").format(count=len(given)))
        return (given[0] if given else None), control
    if cn is not None:
        if not given:
            raise needs_control_image(cn)
        if len(given) > 2:
            raise PromptError(_("{count} images came with --cn: give one (the control image) "
                                "or two (the image prompt, then the control image).").format(
                                    count=len(given)))
        return (given[0], given[1]) if len(given) == 2 else (None, given[0])
    urls = sum(isinstance(item, str) for item in given)
    if urls > 1:
        raise PromptError(_("The prompt starts with {count} image URLs: give one image "
                            "(one URL first, or one attachment).").format(count=urls))
    if mixed:
        raise PromptError(_("Give the image either attached or as a URL first, not both."))
    if len(given) > 1:
        raise PromptError(_("{count} images came with the prompt: give one, or add --cn "
                            "KIND to use the second as a control image.").format(
                                count=len(given)))
    return given[0], None


def _needs_cn() -> PromptError:
    return PromptError(_("A control image needs --cn KIND in the prompt (e.g. --cn canny): "
                         "say which ControlNet it guides."))


def _bytes(settings: Settings, image: str | bytes) -> bytes:
    return image if isinstance(image, bytes) else read_image_reference(settings, image)


def controlled(prepared: Prepared, control: Control, data: bytes, limits: Limits,
               settings: Settings, storage: ImageSink, *, keep_size: bool) -> Prepared:
    """`prepared` guided by the control image in `data` (checked, stored) through `control`.

    With an image prompt (`keep_size`) the control image is cropped to the request's shape;
    otherwise the request takes the control image's shape at its own area, as an image
    prompt's would, so the map is never distorted. The map is always exactly the request's
    size."""
    request = prepared.request
    source = prepare_source(data, max_bytes=settings.max_upload_bytes,
                            max_pixels=settings.max_upscale_pixels, what=N_("control image"))
    notes = [note for note in source.notes if "scaled down" not in note]
    size = (request.width, request.height)
    if not keep_size:
        size = size_for_ratio((source.width, source.height), _area_limits(limits, size))
    elif abs(source.width / source.height - size[0] / size[1]) > 0.02 * size[0] / size[1]:
        notes.append(_("The control image was cropped to the image prompt's shape "
                       "({width}×{height}).").format(width=size[0], height=size[1]))
    png = source.png if (source.width, source.height) == size else _fitted_png(source.png, size)
    fields = {**request.model_dump(), "width": size[0], "height": size[1],
              "control": control.kind, "control_image": storage.put(png),
              "control_weight": control.weight}
    return Prepared(ImageRequest.model_validate(fields), (*prepared.notes, *notes))


def _area_limits(limits: Limits, size: tuple[int, int]) -> Limits:
    """`limits` whose default area is the request's, for size_for_ratio."""
    return replace(limits, default_size=round((size[0] * size[1]) ** 0.5))


def _fitted_png(data: bytes, size: tuple[int, int]) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        fitted = ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    fitted.save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_from(request: ImageRequest, data: bytes, limits: Limits, settings: Settings,
               storage: ImageStore) -> Prepared:
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
        raise PromptError(_("An image must be an http(s) URL or a data:image/…;base64, URL, "
                            "not {given}.").format(given=repr(ref[:40])))
    limit = settings.max_upload_bytes
    try:
        response = outbound.request(
            "GET", ref, policy=outbound.OutboundPolicy.from_settings(settings),
            what=N_("image"), headers={"Accept": "image/*"}, max_bytes=limit,
            follow_redirects=True)
    except OutboundTooLarge:
        raise PromptError(_("The image at that URL is larger than {size} "
                            "(IMAGINE_MAX_UPLOAD_BYTES): link a smaller one.").format(
                                size=_mib(limit))) from None
    if response.status != 200:
        raise PromptError(_("The image URL answered HTTP {status}: link an image that opens "
                            "without logging in.").format(status=response.status))
    kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not (kind.startswith("image/") or kind in _GENERIC_TYPES):
        raise PromptError(_("The image URL gave {kind}, not an image: link the image file "
                            "itself, not a page that shows it.").format(kind=kind))
    return response.body


def _data_url_bytes(ref: str, limit: int) -> bytes:
    match = _DATA_URL.match(ref)
    if not match or not match.group(3):
        raise PromptError(_("A data URL image must look like data:image/png;base64,… "
                            "(base64-encoded)."))
    kind = (match.group(1) or "").lower()
    if not kind.startswith("image/"):
        raise PromptError(_("The data URL holds {kind}, not an image: use "
                            "data:image/png;base64,… (or jpeg, webp, gif, bmp).").format(
                                kind=kind or "text"))
    payload = ref[match.end():]
    # Checked before decoding: base64 is 4 characters for every 3 bytes.
    if len(payload) // 4 * 3 > limit + 3:
        raise _too_large(limit)
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise PromptError(_("The data URL's base64 is not valid: encode the image file "
                            "again.")) from None
    if len(data) > limit:
        raise _too_large(limit)
    return data


def _too_large(limit: int) -> PromptError:
    return PromptError(_("The image is larger than {size} (IMAGINE_MAX_UPLOAD_BYTES): send a "
                         "smaller one.").format(size=_mib(limit)))


def _mib(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count / 1024:g} KiB"
    return f"{count / (1024 * 1024):g} MiB"
