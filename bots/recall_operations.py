"""Recall of an operation's image: the Upscale, Zoom Out, Pan, Vary (Region) or image prompt
that made it, read back from its PNG so that Run again repeats the operation on the same
source image; a PNG that does not say enough is recalled as a text prompt, with a note."""

from __future__ import annotations

from collections.abc import Mapping

from bots.recall_models import shown
from generator import png
from generator.geometry import DIRECTIONS, ZOOM_FACTORS
from generator.request import (
    DETAIL_STRENGTH,
    IMAGE_PROMPT_STRENGTH,
    SOURCE_MODES,
    UPSCALE_STRENGTH,
)
from settings.i18n import _
from tasks.core.storage import Storage

_DEFAULT_STRENGTH = {"img2img": IMAGE_PROMPT_STRENGTH, "upscale": DETAIL_STRENGTH,
                     "upscale_creative": UPSCALE_STRENGTH}


def number(raw: str | None) -> float | None:
    """A recorded number (None when missing, unreadable, NaN or infinite)."""
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value == value and abs(value) != float("inf") else None


def recalled_operation(entries: Mapping[str, str], notes: list[str]) -> dict[str, object]:
    """The mode fields of an operation's PNG, or none (a text prompt) with a note when the
    PNG does not say enough to repeat it."""
    mode = entries.get(png.OPERATION, "").strip()
    if not mode:
        return {}
    source = entries.get(png.SOURCE_IMAGE, "").strip()
    fields: dict[str, object] = {"mode": mode, "source_image": source}
    problem = None
    if mode not in SOURCE_MODES:
        problem = _("the operation {shown} is unknown here").format(shown=shown(mode))
    elif not Storage.is_valid_name(source):
        problem = _("it does not name its source image")
    elif mode == "inpaint":
        fields["mask_image"] = entries.get(png.MASK_IMAGE, "").strip()
        if not Storage.is_valid_name(str(fields["mask_image"])):
            problem = _("it does not name its mask")
    elif mode == "zoom_out":
        fields["factor"] = number(entries.get(png.ZOOM_FACTOR))
        if fields["factor"] not in ZOOM_FACTORS:
            problem = _("its zoom factor is not 1.5 or 2")
    elif mode == "pan":
        fields["direction"] = entries.get(png.PAN, "").strip()
        if fields["direction"] not in DIRECTIONS:
            problem = _("its pan direction is not left, right, up or down")
    elif mode in ("upscale", "upscale_creative"):
        factor = number(entries.get(png.UPSCALE_FACTOR))
        fields["factor"] = factor if factor is not None and 1.0 < factor <= 4.0 else None
    if problem is not None:
        notes.append(_("This image was made by an operation, but {problem}: recalled as a text "
                       "prompt.").format(problem=problem))
        return {}
    fields["strength"] = _strength(entries.get(png.STRENGTH), mode, notes)
    return fields


def _strength(raw: str | None, mode: str, notes: list[str]) -> float:
    default = _DEFAULT_STRENGTH.get(mode, 1.0)
    value = number(raw)
    if raw is None:
        return default
    if value is None or not 0.0 < value <= 1.0:
        notes.append(_("Denoising strength {shown} is not above 0 and at most 1: {default:g} "
                       "used.").format(shown=shown(raw), default=default))
        return default
    return value
