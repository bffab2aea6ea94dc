"""Small PNGs drawn on the fly: "rendering…" while a prompt URL's image is being made, and
error cards, so a broken embed in a README says why instead of showing a torn icon."""

from __future__ import annotations

import io
import textwrap

from PIL import Image, ImageDraw

from bots.web.card_fonts import card_font
from settings.i18n import _

# A placeholder keeps the shape of the image it stands for, at most this wide or tall:
# page layout does not jump when the real image arrives, and the PNG stays a few KB.
MAX_SIDE = 384
MIN_SIDE = 160
MARGIN = 10
LINE_GAP = 4
MAX_LINES = 12
# A line of the default bitmap font plus its gap: a preview goes below the text lines.
_LINE_HEIGHT = 11 + LINE_GAP

BACKGROUND = (36, 38, 46)
TITLE = (235, 235, 240)
TEXT = (165, 168, 180)
ERROR_TITLE = (255, 140, 130)


def _shape(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))


def _card(size: tuple[int, int], title: str, body: str, title_colour: tuple[int, int, int]
          ) -> bytes:
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, wide = card_font(title + body)
    # The default font is about 6 px per character; a CJK font's glyphs are 12 px wide.
    columns = max(10, (size[0] - 2 * MARGIN) // (12 if wide else 6))
    y = MARGIN
    lines = [(title, title_colour)]
    for paragraph in body.splitlines() or [""]:
        lines += [(line, TEXT) for line in textwrap.wrap(paragraph, columns) or [""]]
    for text, colour in lines[:MAX_LINES]:
        draw.text((MARGIN, y), text, fill=colour, font=font)
        y += int(draw.textbbox((0, 0), text or "X", font=font)[3]) + LINE_GAP
        if y > size[1] - MARGIN:
            break
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def placeholder_png(prompt: str, width: int, height: int, detail: str = "") -> bytes:
    """The "rendering…" card with the prompt, shaped like the image it stands for."""
    body = prompt if not detail else f"{prompt}\n\n{detail}"
    return _card(_shape(width, height), "rendering…", body, TITLE)


def preview_placeholder_png(width: int, height: int, detail: str, preview: bytes) -> bytes:
    """The "rendering…" card with the job's latest live preview (a JPEG) under the title,
    in place of the prompt text: the picture says more than the prompt while it forms."""
    size = _shape(width, height)
    picture = Image.open(io.BytesIO(preview)).convert("RGB")
    columns = max(10, (size[0] - 2 * MARGIN) // 6)
    top = MARGIN + (1 + len(textwrap.wrap(detail, columns))) * _LINE_HEIGHT
    box = (size[0] - 2 * MARGIN, size[1] - top - MARGIN)
    picture.thumbnail((max(1, box[0]), max(1, box[1])), Image.Resampling.BILINEAR)
    card = Image.open(io.BytesIO(_card(size, "rendering…", detail, TITLE))).convert("RGB")
    card.paste(picture, ((size[0] - picture.width) // 2, top))
    out = io.BytesIO()
    card.save(out, "PNG")
    return out.getvalue()


def error_png(message: str, title: str | None = None) -> bytes:
    """An error card for clients that asked for an image."""
    return _card((MAX_SIDE, MAX_SIDE // 2), title or _("cannot draw this"), message, ERROR_TITLE)
