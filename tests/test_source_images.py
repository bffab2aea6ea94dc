"""Images users hand in: each bad one refused with its reason, the rest made ready to draw."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from generator.errors import ImageRejected
from generator.source_images import (
    ANIMATED_NOTE,
    TRANSPARENT_NOTE,
    SourceImage,
    mask_for,
    prepare_mask,
    prepare_source,
)

MiB = 1024 * 1024


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def prepare(data: bytes, max_pixels: int = 64 * 64) -> SourceImage:
    return prepare_source(data, max_bytes=MiB, max_pixels=max_pixels)


def decoded(source: SourceImage) -> Image.Image:
    image = Image.open(io.BytesIO(source.png))
    assert image.format == "PNG" and image.size == (source.width, source.height)
    return image


def noise(width: int, height: int, seed: int = 1) -> Image.Image:
    values = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(values, "RGB")


def test_an_image_within_the_limit_in_multiples_of_8_is_used_pixel_for_pixel() -> None:
    original = noise(48, 32)
    source = prepare(encode(original, "WEBP", lossless=True))
    assert (source.width, source.height, source.notes) == (48, 32, ())
    assert np.array_equal(np.asarray(decoded(source)), np.asarray(original))


def test_a_large_image_is_scaled_down_keeping_its_shape_and_says_so() -> None:
    source = prepare(encode(noise(200, 100), "JPEG"))
    assert (source.width, source.height) == (88, 40)  # 2.2:1 of 2:1 within 64×64 = 4096 px
    assert source.width * source.height <= 64 * 64
    assert source.notes == ("The image was scaled down from 200×100 to 88×40 (the most "
                            "pixels drawn at once).",)
    # A side just over a multiple of 8 is trimmed, not announced.
    trimmed = prepare(encode(noise(50, 33)))
    assert (trimmed.width, trimmed.height, trimmed.notes) == (48, 32, ())


@pytest.mark.parametrize(("data", "message"), [
    (b"", "The image is not an image Pillow can read here: send a PNG, JPEG, WebP, GIF or BMP "
          "file."),
    (b"%PDF-1.7 not a picture", "not an image Pillow can read here: send a PNG, JPEG"),
    (encode(noise(16, 16), "TIFF"), "send a PNG, JPEG, WebP, GIF or BMP file"),
    (encode(noise(64, 64))[:200], "could not be decoded (it is damaged or cut short"),
    (encode(noise(4, 40)), "The image is 4×40: each side needs at least 8 pixels."),
])
def test_what_is_not_a_usable_image_is_refused_with_its_reason(data: bytes, message: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare(data)
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_more_bytes_than_the_upload_limit_are_refused_before_reading() -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare_source(b"\0" * (3 * MiB // 2), max_bytes=MiB, max_pixels=4096)
    assert caught.value.message == ("The image is 1.5 MiB; at most 1 MiB is accepted "
                                    "(IMAGINE_MAX_UPLOAD_BYTES).")


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming `width`×`height` with a few bytes of data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("size", "said"), [((10_000, 6_000), "is 10000×6000"),
                                            ((60_000, 60_000), "has far too many pixels")])
def test_too_many_pixels_are_refused_from_the_header(size: tuple[int, int], said: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare(bomb_png(*size))
    assert caught.value.message == (f"The image {said}; at most 50 megapixels are read: send "
                                    "a smaller image.")


def test_an_animation_gives_its_first_frame_and_a_note() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    source = prepare(data)
    assert source.notes == (ANIMATED_NOTE.format(what="image"),)
    assert decoded(source).convert("RGB").getpixel((5, 5)) == (255, 0, 0)


def test_transparency_is_filled_with_white_and_said() -> None:
    image = Image.new("RGBA", (16, 16), (0, 0, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, 8, 16))
    source = prepare(encode(image))
    rgb = decoded(source)
    assert rgb.mode == "RGB" and source.notes == (TRANSPARENT_NOTE.format(what="image"),)
    assert rgb.getpixel((2, 2)) == (255, 255, 255) and rgb.getpixel((12, 2)) == (0, 0, 255)
    # An alpha channel that hides nothing changes nothing the user sees: no note.
    assert prepare(encode(Image.new("RGBA", (16, 16), (9, 9, 9, 255)))).notes == ()


@pytest.mark.parametrize("image", [
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)),                         # red in CMYK
    Image.new("RGB", (16, 16), (255, 0, 0)).quantize(4),                   # palette
    Image.new("L", (16, 16), 76),                                          # greyscale
    Image.fromarray(np.full((16, 16), 76 * 257, dtype=np.uint16)),         # 16-bit greyscale
], ids=["cmyk", "palette", "grey", "grey16"])
def test_other_colour_modes_become_rgb(image: Image.Image) -> None:
    fmt = "JPEG" if image.mode == "CMYK" else "PNG"
    pixel = decoded(prepare(encode(image, fmt))).getpixel((8, 8))
    assert isinstance(pixel, tuple) and len(pixel) == 3
    expected = (76, 76, 76) if image.mode not in ("CMYK", "P") else (255, 0, 0)
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, expected, strict=True))


def test_the_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (48, 16), "white")
    image.paste((255, 0, 0), (0, 0, 8, 16))  # the left edge red
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise
    source = prepare(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    upright = decoded(source)
    assert (source.width, source.height) == (16, 48)
    pixel = upright.getpixel((8, 2))  # the top edge is now red
    assert isinstance(pixel, tuple)
    red, green, blue = pixel[:3]
    assert red > 200 and green < 60 and blue < 60


def test_a_mask_becomes_black_and_white_at_the_image_size() -> None:
    mask = Image.new("L", (24, 16), 0)
    mask.paste(200, (0, 0, 8, 16))
    mask.paste(100, (8, 0, 16, 16))  # under the threshold: kept
    binary = Image.open(io.BytesIO(prepare_mask(encode(mask.convert("RGB")), size=(24, 16),
                                                max_bytes=MiB)))
    assert binary.mode == "L" and binary.size == (24, 16)
    assert [binary.getpixel((x, 4)) for x in (2, 10, 20)] == [255, 0, 0]
    # Painted on a transparent layer: the unpainted (transparent) part is kept.
    layer = Image.new("RGBA", (24, 16), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (16, 0, 24, 16))
    from_layer = Image.open(io.BytesIO(prepare_mask(encode(layer), size=(24, 16),
                                                    max_bytes=MiB)))
    assert [from_layer.getpixel((x, 4)) for x in (2, 20)] == [0, 255]


def test_a_mask_of_another_size_or_all_black_is_refused() -> None:
    with pytest.raises(ImageRejected) as wrong:
        prepare_mask(encode(Image.new("L", (512, 400), 255)), size=(512, 512), max_bytes=MiB)
    assert wrong.value.message == ("The mask is 512×400 but the image is 512×512: paint the "
                                   "mask on the same image.")
    with pytest.raises(ImageRejected) as black:
        prepare_mask(encode(Image.new("L", (16, 16), 40)), size=(16, 16), max_bytes=MiB)
    assert "nothing to redraw" in black.value.message
    with pytest.raises(ImageRejected, match="not an image"):
        prepare_mask(b"hello", size=(16, 16), max_bytes=MiB)


def test_a_mask_painted_on_the_image_as_sent_is_fitted_like_the_image() -> None:
    source = prepare(encode(noise(100, 50)))  # scaled to 88×40 within 64×64 pixels
    mask = Image.new("L", (100, 50), 0)
    mask.paste(255, (50, 0, 100, 50))  # the right half
    fitted = Image.open(io.BytesIO(mask_for(encode(mask), source, max_bytes=MiB)))
    assert fitted.size == (88, 40) and set(fitted.getdata()) == {0, 255}
    assert [fitted.getpixel((x, 20)) for x in (10, 80)] == [0, 255]
    # One painted on the fitted image works too; any other size says the size as sent.
    assert mask_for(encode(Image.new("L", (88, 40), 255)), source, max_bytes=MiB)
    with pytest.raises(ImageRejected, match="The mask is 64×64 but the image is 100×50"):
        mask_for(encode(Image.new("L", (64, 64), 255)), source, max_bytes=MiB)
