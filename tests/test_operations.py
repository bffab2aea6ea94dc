"""Image operations on the tiny model: upscale (with and without a super-resolution model),
zoom out, pan and inpaint — their sizes, notes, seeds, and the source's pixels kept."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from generator.errors import GenerationCancelled, GenerationError, ModelError
from generator.geometry import DIRECTIONS, pan_canvas, zoom_canvas
from generator.operations import NO_UPSCALER, NO_UPSCALER_CREATIVE
from generator.request import ImageRequest

SEED = 11
# One diffusion pass may draw at most this much here, so the detail pass of a 2× upscale of
# 64 px runs in tiles; with the upscaler engine it runs in one go.
MAX_PIXELS = 64 * 64


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path):  # noqa: ANN201
    from generator.engine import Engine

    return Engine({"default": str(tiny_model_dir)}, device="cpu", torch_threads=2,
                  max_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def engine_sr(tiny_model_dir: Path, tiny_upscaler: Path):  # noqa: ANN201
    from generator.engine import Engine

    return Engine({"default": str(tiny_model_dir)}, device="cpu", torch_threads=2,
                  upscaler=tiny_upscaler, max_pixels=4 * MAX_PIXELS)


@pytest.fixture(scope="module")
def parent(engine) -> ImageRequest:  # noqa: ANN001
    return ImageRequest(prompt="a lighthouse on a cliff", width=64, height=64, seed=SEED,
                        num_inference_steps=2)


@pytest.fixture(scope="module")
def stored(engine, parent: ImageRequest) -> dict[str, Image.Image]:  # noqa: ANN001
    """Images 'in storage': a drawn 64×64 source, an odd-sized one, and masks."""
    drawn = Image.open(io.BytesIO(engine.generate(parent)[0].png)).convert("RGB")
    odd = drawn.resize((60, 44))
    circle = Image.new("L", (64, 64), 0)
    yy, xx = np.mgrid[:64, :64]
    circle = Image.fromarray(((xx - 24) ** 2 + (yy - 30) ** 2 <= 81).astype(np.uint8) * 255)
    corner = Image.new("L", (60, 44), 0)
    corner.paste(200, (40, 0, 60, 12))
    dot = Image.new("L", (128, 128), 0)
    dot.paste(255, (90, 20, 100, 30))
    return {"src": drawn, "odd": odd, "circle": circle, "corner": corner,
            "big": drawn.resize((128, 128)), "dot": dot,
            "blank": Image.new("L", (64, 64), 0), "small": Image.new("L", (32, 32), 255)}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def run(engine, request: ImageRequest, stored: dict[str, Image.Image], **kwargs):  # noqa: ANN001, ANN201
    images = engine.generate(request, load_image=stored.__getitem__, **kwargs)
    assert len(images) == 1
    return images[0]


# --- upscale ---------------------------------------------------------------------------


TILED = "The detail pass ran in 9 overlapping tiles of 64×64 (IMAGINE_MAX_PIXELS per pass)."


@pytest.mark.parametrize("creative", [False, True])
def test_upscale_without_upscaler_is_lanczos_and_a_detail_pass(engine, parent, stored,
                                                               creative: bool) -> None:  # noqa: ANN001
    progress: list[tuple[int, int]] = []
    result = run(engine, parent.upscaled("src", SEED, 128, 128, 2, creative=creative), stored,
                 on_progress=lambda step, total, _: progress.append((step, total)))
    assert (result.width, result.height, result.seed) == (128, 128, SEED)
    # 128×128 is over this engine's IMAGINE_MAX_PIXELS: the detail pass runs in tiles.
    assert result.notes == ((NO_UPSCALER_CREATIVE if creative else NO_UPSCALER), TILED)
    assert "Size: 128x128" in result.parameters and f"Seed: {SEED}" in result.parameters
    strength = "0.3" if creative else "0.2"
    assert f"Denoising strength: {strength}" in result.parameters
    # Progress counts over all tiles as one run, never backwards.
    assert progress[-1][0] == progress[-1][1] and progress == sorted(progress)


def test_upscale_with_the_upscaler(engine_sr, parent, stored) -> None:  # noqa: ANN001
    subtle = run(engine_sr, parent.upscaled("src", SEED, 128, 128, 2), stored)
    assert (subtle.width, subtle.height, subtle.seed, subtle.notes) == (128, 128, SEED, ())
    # The tiny model stays close to a plain enlargement: it is a real SR network at work,
    # not noise and not a redraw.
    plain = np.asarray(stored["src"].resize((128, 128), Image.Resampling.NEAREST), dtype=np.int16)
    assert np.abs(pixels(subtle.png).astype(np.int16) - plain).mean() < 12
    creative = run(engine_sr, parent.upscaled("src", SEED, 128, 128, 2, creative=True), stored)
    assert (creative.width, creative.height, creative.notes) == (128, 128, ())
    assert not np.array_equal(pixels(creative.png), pixels(subtle.png))
    # A 2× model asked for 4×: applied twice, then resized to exactly the request's size.
    four = run(engine_sr, parent.upscaled("src", SEED, 256, 248, 4), stored)
    assert (four.width, four.height) == (256, 248)


def test_capped_upscale_says_so(engine_sr, parent, stored) -> None:  # noqa: ANN001
    capped = run(engine_sr, parent.upscaled("src", SEED, 96, 96, 2), stored)
    assert (capped.width, capped.height) == (96, 96)
    assert capped.notes == ("Upscaled 2× would be 128×128: capped to 96×96 by "
                            "IMAGINE_MAX_UPSCALE_PIXELS.",)


def test_upscaler_that_is_not_super_resolution(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from generator.engine import Engine
    from generator.tiny_upscaler import build_tiny_upscaler

    restorer = build_tiny_upscaler(tmp_path / "restore.safetensors", scale=1)
    junk = tmp_path / "junk.safetensors"
    save_file({"some.weight": torch.zeros(3)}, str(junk))
    text = tmp_path / "notes.pth"
    text.write_text("not a model")
    for path, reason in ((restorer, "not super-resolution"), (junk, "could not be loaded"),
                         (text, "could not be loaded")):
        engine = Engine({"default": str(tiny_model_dir)}, device="cpu", upscaler=path)
        with pytest.raises(ModelError, match=reason) as error:
            # A generate worker loads it at start (warm_up), so a bad file shows at once.
            engine.warm_up() if path == restorer else engine.upscaler()
        assert f"IMAGINE_UPSCALER={path}" in error.value.message
        assert "Real-ESRGAN" in error.value.message


# --- zoom out and pan ------------------------------------------------------------------


CASES = [("zoom_out", 1.5, None), ("zoom_out", 2.0, None), *(("pan", None, d) for d in DIRECTIONS)]


@pytest.mark.parametrize(("mode", "factor", "direction"), CASES)
def test_outpaint_keeps_the_source_exactly(engine, parent, stored, mode: str,
                                           factor: float | None, direction) -> None:  # noqa: ANN001
    canvas = zoom_canvas(64, 64, factor) if factor else pan_canvas(64, 64, direction)
    if mode == "zoom_out":
        request = parent.zoomed_out("src", SEED, canvas.width, canvas.height, factor)
    else:
        request = parent.panned("src", SEED, canvas.width, canvas.height, direction)
    result = run(engine, request, stored)
    assert (result.width, result.height, result.seed, result.notes) == (
        canvas.width, canvas.height, SEED, ())
    drawn = pixels(result.png)
    region = drawn[canvas.top:canvas.top + 64, canvas.left:canvas.left + 64]
    assert np.array_equal(region, np.asarray(stored["src"]))
    # The new area is drawn, not left as the blurred fill or black.
    outside = np.ones(drawn.shape[:2], dtype=bool)
    outside[canvas.top:canvas.top + 64, canvas.left:canvas.left + 64] = False
    assert drawn[outside].std() > 1


def test_capped_zoom_scales_down_and_says_so(engine, parent, stored) -> None:  # noqa: ANN001
    # A 2× zoom of 64 px is a 128×128 canvas; the front end capped it to 96×96.
    result = run(engine, parent.zoomed_out("src", SEED, 96, 96, 2), stored)
    assert (result.width, result.height) == (96, 96)
    assert result.notes == ("Scaled down to 96×96 to fit IMAGINE_MAX_PIXELS (the full canvas "
                            "would be 128×128).",)
    assert "Size: 96x96" in result.parameters


def test_operations_report_progress_and_cancel(engine, parent, stored) -> None:  # noqa: ANN001
    steps: list[int] = []
    request = parent.panned("src", SEED, 96, 64, "left").model_copy(
        update={"num_inference_steps": 3})
    with pytest.raises(GenerationCancelled):
        run(engine, request, stored, on_progress=lambda step, total, _: steps.append(step),
            should_cancel=lambda: len(steps) >= 2)
    assert steps == [1, 2]


# --- inpaint ---------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "mask"), [("src", "circle"), ("odd", "corner"),
                                              ("big", "dot")])
def test_inpaint_changes_only_the_mask_and_its_band(engine, parent, stored, source: str,
                                                    mask: str) -> None:  # noqa: ANN001
    image = stored[source]
    result = run(engine, parent.inpainted(source, mask, SEED, *image.size), stored)
    assert (result.width, result.height, result.seed) == (*image.size, SEED)
    redraw = np.asarray(stored[mask]) >= 128
    # Pixels within Chebyshev distance 8 of the mask: a 17×17 square maximum filter.
    band = ndimage.maximum_filter(redraw, size=17)
    before, after = np.asarray(image), pixels(result.png)
    assert np.array_equal(after[~band], before[~band])
    assert not np.array_equal(after[redraw], before[redraw])
    if source == "big":  # over IMAGINE_MAX_PIXELS: the mask's surroundings, scaled to fit
        assert result.notes == ("The region was drawn at 64×56 to fit IMAGINE_MAX_PIXELS and "
                                "scaled up to 102×94.",)
    else:
        assert result.notes == ()


def test_inpaint_refuses_bad_masks(engine, parent, stored) -> None:  # noqa: ANN001
    with pytest.raises(GenerationError, match="the mask is 32×32 but the image is 64×64"):
        run(engine, parent.inpainted("src", "small", SEED, 64, 64), stored)
    with pytest.raises(GenerationError, match="no white pixels"):
        run(engine, parent.inpainted("src", "blank", SEED, 64, 64), stored)


# --- tiles -----------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "tile", "overlap"),
                         [(64, 64, 512, 32), (1000, 700, 512, 32), (128, 200, 64, 16)])
def test_tiles_cover_the_image_and_fade_only_over_overlaps(width: int, height: int, tile: int,
                                                           overlap: int) -> None:
    from generator.tiles import grid, paste_faded

    tiles = grid(width, height, tile, tile, overlap)
    covered = np.zeros((height, width), dtype=int)
    canvas = Image.new("RGB", (width, height))
    for piece in tiles:
        covered[piece.top:piece.top + piece.height, piece.left:piece.left + piece.width] += 1
        assert piece.overlap_left >= (overlap if piece.left else 0)
        paste_faded(canvas, Image.new("RGB", (piece.width, piece.height), (200, 100, 50)), piece)
    assert covered.min() >= 1
    # Fading in over earlier tiles leaves nothing of the black canvas showing through.
    assert np.all(np.asarray(canvas) == (200, 100, 50))
