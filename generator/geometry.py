"""Sizes and placements of every image operation, computed once for front ends and workers.

A front end uses these to say what a follow-up will produce before it is queued (and to
refuse or announce a capped size); the worker uses the same functions on the real source
image, so the two never disagree. Pure arithmetic: no Pillow, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# The VAE of every SD-family model works in steps of 8 pixels.
MULTIPLE = 8

Direction = Literal["left", "right", "up", "down"]
DIRECTIONS: tuple[Direction, ...] = ("left", "right", "up", "down")
ZOOM_FACTORS: tuple[float, ...] = (1.5, 2.0)


def floor8(value: float) -> int:
    """`value` rounded down to a multiple of 8, at least 8."""
    return max(MULTIPLE, int(value) // MULTIPLE * MULTIPLE)


@dataclass(frozen=True)
class Canvas:
    """A grown canvas and where the source sits on it (top-left corner)."""

    width: int
    height: int
    left: int
    top: int


def zoom_canvas(width: int, height: int, factor: float) -> Canvas:
    """Zoom Out ×factor: each side grows by `factor`, the source centred."""
    new_width, new_height = floor8(factor * width), floor8(factor * height)
    return Canvas(new_width, new_height, (new_width - width) // 2, (new_height - height) // 2)


def pan_canvas(width: int, height: int, direction: Direction) -> Canvas:
    """Pan: the canvas grows by half the source's side towards `direction`; the source stays
    against the opposite edge."""
    if direction in ("left", "right"):
        grown = width + floor8(width / 2)
        return Canvas(grown, height, grown - width if direction == "left" else 0, 0)
    grown = height + floor8(height / 2)
    return Canvas(width, grown, 0, grown - height if direction == "up" else 0)


def fit_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size of this aspect ratio, in multiples of 8, with at most `max_pixels`.

    A size already within the limit keeps its own sides (rounded down to multiples of 8).
    """
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    fitted_w, fitted_h = floor8(width * scale), floor8(height * scale)
    # Rounding each side separately can overshoot by a little: shrink the longer side.
    while fitted_w * fitted_h > max_pixels and max(fitted_w, fitted_h) > MULTIPLE:
        if fitted_w >= fitted_h:
            fitted_w -= MULTIPLE
        else:
            fitted_h -= MULTIPLE
    return fitted_w, fitted_h


@dataclass(frozen=True)
class Planned:
    """The size an operation will produce, and whether a pixel limit made it smaller."""

    width: int
    height: int
    capped: bool


def upscale_size(width: int, height: int, factor: int, max_pixels: int) -> Planned:
    """`factor` × each side, scaled down (keeping the aspect ratio) to `max_pixels`."""
    wanted_w, wanted_h = width * factor, height * factor
    fitted = fit_within(wanted_w, wanted_h, max_pixels)
    return Planned(*fitted, capped=fitted != (floor8(wanted_w), floor8(wanted_h)))


def grown_size(canvas: Canvas, max_pixels: int) -> Planned:
    """The size a zoom or pan result has: its canvas, or scaled down to `max_pixels`."""
    fitted = fit_within(canvas.width, canvas.height, max_pixels)
    return Planned(*fitted, capped=fitted != (canvas.width, canvas.height))
