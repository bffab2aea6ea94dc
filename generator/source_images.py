"""Images that users hand in (image prompts, masks), checked and made ready to draw from.

Every front end (web, Slack, Discord, the CLI) and the worker share this, so an image is
refused with the same one-line reason everywhere. The pixel count is read from the header
and checked before anything is decoded: a 40 KB PNG can claim 50,000 × 50,000 pixels.
Pure Pillow (and numpy for 16-bit greyscale): no torch, so bot processes may import it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from generator.errors import ImageRejected
from generator.geometry import MULTIPLE, fit_within
from settings.i18n import N_, _

# Decoders we let near user bytes: the common web formats (the JPEG decoder also opens
# phone JPEGs as MPO). Exotic formats widen the attack surface for no gain.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
FORMATS_TEXT = "PNG, JPEG, WebP, GIF or BMP"
# The most pixels ever decoded, whatever the drawing limit: a 48-megapixel phone photo
# passes (and is then scaled down); a decompression bomb does not.
MAX_DECODE_PIXELS = 50_000_000
# Formats whose extra frames are animation (an MPO's second frame is a depth map or preview).
ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP"})
MASK_THRESHOLD = 128

ANIMATED_NOTE = N_("The {what} is animated: its first frame was used.")
TRANSPARENT_NOTE = N_("The {what} has transparent areas: they were filled with white.")


@dataclass(frozen=True)
class SourceImage:
    """A user's image as an RGB PNG whose sides are multiples of 8, and what to tell them."""

    png: bytes
    width: int
    height: int
    notes: tuple[str, ...]
    # The upright size as sent, before fitting: a mask painted on the image as sent has it.
    original_size: tuple[int, int] | None = None


def prepare_source(data: bytes, *, max_bytes: int, max_pixels: int,
                   what: str = N_("image")) -> SourceImage:
    """`data` as an RGB PNG within `max_pixels`: EXIF rotation applied, alpha on white, the
    first frame of an animation, fitted to multiples of 8. ImageRejected when it cannot be."""
    what = _(what)  # what the messages call it ("control image"), in the user's language
    image = _open(data, max_bytes=max_bytes, max_decode=max(MAX_DECODE_PIXELS, max_pixels),
                  what=what)
    notes: list[str] = []
    if image.format in ANIMATED_FORMATS and getattr(image, "n_frames", 1) > 1:
        notes.append(_(ANIMATED_NOTE).format(what=what))
    image = _decoded(image, what)
    rgb, transparent = _rgb(image)
    if transparent:
        notes.append(_(TRANSPARENT_NOTE).format(what=what))
    width, height = rgb.size
    if min(width, height) < MULTIPLE:
        raise ImageRejected(_("The {what} is {width}×{height}: each side needs at least "
                              "{least} pixels.").format(
                                what=what, width=width, height=height, least=MULTIPLE))
    fitted = fit_within(width, height, max_pixels)
    if fitted[0] * fitted[1] < floor_area(width, height):
        notes.append(_("The {what} was scaled down from {width}×{height} to {fitted}×{fitted2} "
                       "(the most pixels drawn at once).").format(
                         what=what, width=width, height=height, fitted=fitted[0],
                         fitted2=fitted[1]))
    return SourceImage(_png(rgb_fitted(rgb, fitted)), *fitted, tuple(notes), (width, height))


def prepare_mask(data: bytes, *, size: tuple[int, int], max_bytes: int) -> bytes:
    """A mask (white = redraw, luminance ≥ 128; transparent = keep) of exactly `size` as a
    binary "L" PNG of 0 and 255. ImageRejected: not an image, another size, or all black."""
    return _png(_binary_mask(data, (size,), max_bytes))


def mask_for(data: bytes, source: SourceImage, *, max_bytes: int) -> bytes:
    """A mask painted on a user's image as they sent it (or as fitted), fitted the way the
    image was, as prepare_mask gives it."""
    fitted = (source.width, source.height)
    binary = _binary_mask(data, (source.original_size or fitted, fitted), max_bytes)
    if binary.size != fitted:
        binary = _threshold(ImageOps.fit(binary, fitted, Image.Resampling.BILINEAR))
        _check_painted(binary)
    return _png(binary)


def rgb_fitted(rgb: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scaled to `size`, the few pixels over a multiple of 8 trimmed evenly from both edges."""
    return rgb if rgb.size == size else ImageOps.fit(rgb, size, Image.Resampling.LANCZOS)


def _binary_mask(data: bytes, sizes: tuple[tuple[int, int], ...],
                 max_bytes: int) -> Image.Image:
    """The mask as 0/255 "L" if it has one of `sizes` (the first is named in the error)."""
    what = _("mask")
    image = _open(data, max_bytes=max_bytes, max_decode=MAX_DECODE_PIXELS, what=what)
    # Compare before decoding (either orientation: EXIF may still turn it).
    if not any(image.size in (size, size[::-1]) for size in sizes):
        raise _wrong_size(image.size, sizes[0])
    image = _decoded(image, what)
    if image.size not in sizes:
        raise _wrong_size(image.size, sizes[0])
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        image = _eight_bit(image)
    if _has_alpha(image):
        # Unpainted parts of a mask drawn on a transparent layer are the parts to keep.
        image = Image.alpha_composite(Image.new("RGBA", image.size, "black"),
                                      image.convert("RGBA"))
    binary = _threshold(image.convert("L"))
    _check_painted(binary)
    return binary


def _threshold(grey: Image.Image) -> Image.Image:
    return grey.point(lambda v: 255 if v >= MASK_THRESHOLD else 0)


def _check_painted(binary: Image.Image) -> None:
    if binary.getextrema()[1] == 0:
        raise ImageRejected(_("The mask is all black: nothing to redraw. Paint the parts to "
                              "redraw in white."))


def floor_area(width: int, height: int) -> int:
    """The pixels left when each side is only rounded down to a multiple of 8 (no scaling)."""
    return (width // MULTIPLE * MULTIPLE) * (height // MULTIPLE * MULTIPLE)


def _open(data: bytes, *, max_bytes: int, max_decode: int, what: str) -> Image.Image:
    """The image's header read (nothing decoded yet), after the byte and pixel checks."""
    if len(data) > max_bytes:
        raise ImageRejected(_("The {what} is {size_text}; at most {size_text2} is accepted "
                              "(IMAGINE_MAX_UPLOAD_BYTES).").format(
                                what=what, size_text=_size_text(len(data)),
                                size_text2=_size_text(max_bytes)))
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(what, None, max_decode) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageRejected(_("The {what} is not an image Pillow can read here: send a "
                              "{formats} file.").format(
                                what=what, formats=FORMATS_TEXT)) from None
    width, height = image.size
    if width * height > max_decode:
        raise _too_many_pixels(what, image.size, max_decode)
    return image


def _decoded(image: Image.Image, what: str) -> Image.Image:
    """The first frame, decoded and turned upright by its EXIF orientation."""
    try:
        image.seek(0)
        upright = ImageOps.exif_transpose(image)
        upright.load()
    except Image.DecompressionBombError:
        raise _too_many_pixels(what, image.size, MAX_DECODE_PIXELS) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejected(_("The {what} could not be decoded (it is damaged or cut short: "
                              "{value}): send it again or another file.").format(
                                what=what, value=str(exc) or type(exc).__name__)) from None
    return upright


def _rgb(image: Image.Image) -> tuple[Image.Image, bool]:
    """(the image in RGB, whether it had transparent pixels, now on white)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        image = _eight_bit(image)
    if not _has_alpha(image):
        return (image if image.mode == "RGB" else image.convert("RGB")), False
    rgba = image.convert("RGBA")
    lowest, _ = rgba.getchannel("A").getextrema()
    transparent = isinstance(lowest, int) and lowest < 255
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB"), transparent


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info)


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) greyscale as 8-bit "L": Pillow's own convert clips it."""
    values = np.asarray(image).astype(np.int64)
    return Image.fromarray((np.clip(values, 0, 65535) // 257).astype(np.uint8), mode="L")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def _wrong_size(got: tuple[int, int], want: tuple[int, int]) -> ImageRejected:
    return ImageRejected(_("The mask is {width}×{height} but the image is "
                           "{image_width}×{image_height}: paint the mask on the same image.").format(
                             width=got[0], height=got[1], image_width=want[0],
                             image_height=want[1]))


def _too_many_pixels(what: str, size: tuple[int, int] | None, limit: int) -> ImageRejected:
    said = (_(" is {width}×{height}").format(width=size[0], height=size[1]) if size
            else _(" has far too many pixels"))
    return ImageRejected(_("The {what}{said}; at most {number:g} megapixels are read: send a "
                           "smaller image.").format(
                             what=what, said=said, number=limit / 1000000.0))


def _size_text(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MiB".replace(".0 MiB", " MiB")
    if count >= 1024:
        return f"{count / 1024:.0f} KiB"
    return f"{count} bytes"
