"""The pixel work around outpainting and inpainting: start images, masks, and putting the
source's own pixels back.

A diffusion pass re-encodes the whole image through the VAE, which changes every pixel a
little. What the user did not ask to change must not change at all, so each operation
composites the source back: byte for byte outside the area drawn (and, for inpainting, a
narrow feathered band around it). Pure Pillow and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter
from scipy.ndimage import maximum_filter

# Inpainting blends the drawn region into its surroundings within this many pixels
# (Chebyshev distance) of the mask; beyond it the source is untouched.
FEATHER = 8
# The model is asked to redraw a little more than the mask, so the feather band blends
# into drawn pixels rather than into the VAE's copy of the source.
_MODEL_MASK_GROW = 4
# The new area of an outpaint starts from the source's edges smeared outwards: the model
# gets the right colours to continue from, and no hard border to copy.
_FILL_BLUR = 16
# Luminance at or above this is "redraw" in a user's mask.
MASK_THRESHOLD = 128


@dataclass(frozen=True)
class Placement:
    """Where a (possibly scaled) source sits on a canvas of width×height."""

    width: int
    height: int
    left: int
    top: int
    source_width: int
    source_height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.left + self.source_width, self.top + self.source_height)


def outpaint_inputs(source: Image.Image, place: Placement) -> tuple[Image.Image, Image.Image]:
    """The start image (source with its edges extended and blurred into the new area) and
    the mask (white in the new area only)."""
    pixels = np.asarray(source)
    pad = ((place.top, place.height - place.top - source.height),
           (place.left, place.width - place.left - source.width), (0, 0))
    extended = Image.fromarray(np.pad(pixels, pad, mode="edge"))
    start = extended.filter(ImageFilter.GaussianBlur(_FILL_BLUR))
    start.paste(source, (place.left, place.top))
    mask = Image.new("L", (place.width, place.height), 255)
    mask.paste(0, place.box)
    return start, mask


def binary_mask(mask: Image.Image) -> np.ndarray:
    """A user's mask as booleans: True where it is to be redrawn."""
    return np.asarray(mask.convert("L")) >= MASK_THRESHOLD


def model_mask(redraw: np.ndarray) -> Image.Image:
    """The mask the model gets: the user's, grown a little (see _MODEL_MASK_GROW)."""
    return Image.fromarray(_grown(redraw, _MODEL_MASK_GROW).astype(np.uint8) * 255, "L")


def _grown(redraw: np.ndarray, k: int) -> np.ndarray:
    """The pixels within Chebyshev distance `k` of a True pixel: a square max filter of side
    2k+1 (scipy's is separable, so it costs the same at any k, unlike Pillow's MaxFilter)."""
    return maximum_filter(redraw, size=2 * k + 1, mode="constant", cval=False)


def feathered_alpha(redraw: np.ndarray) -> np.ndarray:
    """0..1 weights of the drawn image: 1 on the mask, fading to 0 within FEATHER pixels."""
    band = _grown(redraw, FEATHER)
    # Grown by half the band, then blurred: the fade lies outside the mask, within the band.
    soft = Image.fromarray(_grown(redraw, FEATHER // 2).astype(np.uint8) * 255, "L").filter(
        ImageFilter.GaussianBlur(FEATHER / 4))
    alpha = np.asarray(soft, dtype=np.float32) / 255
    alpha = np.where(band, alpha, 0.0)
    return np.where(redraw, 1.0, alpha)


def blend(source: Image.Image, drawn: Image.Image, alpha: np.ndarray) -> Image.Image:
    """`drawn` where alpha is 1, `source` (its exact bytes) where alpha is 0, mixed between."""
    old = np.asarray(source, dtype=np.float32)
    new = np.asarray(drawn.convert("RGB"), dtype=np.float32)
    weight = alpha[..., None]
    mixed = np.clip(np.round(old + (new - old) * weight), 0, 255).astype(np.uint8)
    return Image.fromarray(np.where(weight > 0, mixed, np.asarray(source)))


def paste_back(drawn: Image.Image, source: Image.Image, place: Placement) -> Image.Image:
    """The drawn canvas with the source's own pixels restored where the source sits."""
    result = drawn.convert("RGB").copy()
    result.paste(source, (place.left, place.top))
    return result
