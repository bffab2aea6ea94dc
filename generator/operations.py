"""What each image operation does, step by step: upscale, zoom out / pan, inpaint.

The engine supplies the diffusion passes (`Context.draw`, on pipelines sharing the loaded
weights) and the super-resolution model; this module decides sizes, masks and start images,
and what the user must be told about the result (`Outcome.notes`). Sizes follow
`generator.geometry`, the same arithmetic the front ends used to plan the request: the
request's width×height is the result's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from generator.compositing import (
    Placement,
    binary_mask,
    blend,
    feathered_alpha,
    model_mask,
    outpaint_inputs,
    paste_back,
)
from generator.errors import GenerationCancelled, GenerationError
from generator.geometry import Canvas, fit_within, floor8, pan_canvas, zoom_canvas
from generator.request import SEED_MAX, ImageRequest
from generator.tiles import grid, paste_faded
from settings.i18n import N_, _

if TYPE_CHECKING:
    from generator.upscaler import Upscaler

ProgressCallback = Callable[[int, int, "Image.Image | None"], None]
# draw(pipeline kind, request as run, the kind's own inputs, progress) -> the drawn image
Draw = Callable[[str, ImageRequest, dict[str, Any], "ProgressCallback | None"], Image.Image]

OPERATION_MODES: tuple[str, ...] = ("upscale", "upscale_creative", "zoom_out", "pan", "inpaint")
# Tiles of a detail pass overlap this much, so the fades between them are wide enough to hide.
DETAIL_OVERLAP = 64
# A super-resolution model smaller than the factor asked for is applied again, this often.
MAX_SR_PASSES = 3
# An inpaint of a big image draws the mask's surroundings, at least this far around it.
INPAINT_CONTEXT = 64
NO_UPSCALER = (N_("No upscaler is configured (IMAGINE_UPSCALER): enlarged with Lanczos and a "
                  "light detail pass."))
NO_UPSCALER_CREATIVE = (N_("No upscaler is configured (IMAGINE_UPSCALER): enlarged with "
                           "Lanczos before the creative pass."))
LANCZOS = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class Context:
    """What an operation may use: the engine's passes, the limits, the caller's callbacks."""

    draw: Draw
    upscaler: Upscaler | None
    max_pixels: int
    on_progress: ProgressCallback | None = None
    should_cancel: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Outcome:
    """The result image, the request as it really ran (for the PNG metadata), and notes."""

    image: Image.Image
    request: ImageRequest
    notes: tuple[str, ...] = ()


def run(context: Context, request: ImageRequest, source: Image.Image,
        mask: Image.Image | None = None) -> Outcome:
    """Run one operation of `request.mode` on `source` (RGB) with `request.seed`."""
    if request.mode in ("upscale", "upscale_creative"):
        return upscale(context, request, source)
    if request.mode in ("zoom_out", "pan"):
        return outpaint(context, request, source)
    if request.mode == "inpaint":
        if mask is None:
            raise ValueError("inpaint needs the mask image")
        return inpaint(context, request, source, mask)
    raise ValueError(f"{request.mode} is not an image operation")


# --- upscale ---------------------------------------------------------------------------


def upscale(context: Context, request: ImageRequest, source: Image.Image) -> Outcome:
    """Super-resolution (or Lanczos) to exactly width×height; then a detail pass where no
    model did the work (Subtle) or always (Creative)."""
    target = (floor8(request.width), floor8(request.height))
    creative = request.mode == "upscale_creative"
    notes = list(_capped_upscale(request, source, target))
    enlarged = source
    if context.upscaler is not None:
        enlarged = _super_resolve(context, context.upscaler, source, target)
    else:
        notes.append(_(NO_UPSCALER_CREATIVE if creative else NO_UPSCALER))
    if enlarged.size != target:
        enlarged = enlarged.resize(target, LANCZOS)
    ran = request.model_copy(update={"width": target[0], "height": target[1]})
    if context.upscaler is not None and not creative:
        return Outcome(enlarged, ran, tuple(notes))
    detailed, ran, tiled = detail_pass(context, ran, enlarged)
    return Outcome(detailed, ran, (*notes, *tiled))


def _super_resolve(context: Context, upscaler: Upscaler, source: Image.Image,
                   target: tuple[int, int]) -> Image.Image:
    image = source
    for _attempt in range(MAX_SR_PASSES):
        # A source already as large as the target (a capped upscale) needs only resizing.
        if image.width >= target[0] and image.height >= target[1]:
            break
        image = upscaler.enlarge(image, _tile_progress(context), context.should_cancel)
    return image


def _capped_upscale(request: ImageRequest, source: Image.Image,
                    target: tuple[int, int]) -> tuple[str, ...]:
    if request.factor is None:
        return ()
    wanted = (floor8(request.factor * source.width), floor8(request.factor * source.height))
    if target[0] >= wanted[0] and target[1] >= wanted[1]:
        return ()
    return (_("Upscaled {factor:g}× would be {wanted}×{wanted2}: capped to {target}×{target2} "
              "by IMAGINE_MAX_UPSCALE_PIXELS.").format(
                factor=request.factor, wanted=wanted[0], wanted2=wanted[1], target=target[0],
                target2=target[1]),)


def detail_pass(context: Context, request: ImageRequest,
                image: Image.Image) -> tuple[Image.Image, ImageRequest, tuple[str, ...]]:
    """An img2img pass at request.strength over the whole image: in one go when it fits
    IMAGINE_MAX_PIXELS, else in overlapping tiles of at most that many pixels each."""
    strength = request.strength
    # img2img runs int(steps × strength) steps; diffusers refuses zero.
    steps = max(request.num_inference_steps, math.ceil(1 / strength))
    ran = request.model_copy(update={"num_inference_steps": steps})
    inputs = {"strength": strength}
    if image.width * image.height <= context.max_pixels:
        return context.draw("image2image", ran, {**inputs, "image": image},
                            context.on_progress), ran, ()
    side = floor8(math.sqrt(context.max_pixels))
    tiles = grid(image.width, image.height, side, side, min(DETAIL_OVERLAP, side // 4))
    result = image.copy()
    for index, tile in enumerate(tiles):
        _check_cancel(context, _("cancelled after tile {index} of {tiles_length}").format(
                                   index=index, tiles_length=len(tiles)))
        # A seed per tile: the same noise in every tile would print a faint repeating
        # pattern over the whole image.
        part = ran.model_copy(update={"width": tile.width, "height": tile.height,
                                      "seed": ((ran.seed or 0) + index) % (SEED_MAX + 1)})
        drawn = context.draw("image2image", part, {**inputs, "image": image.crop(tile.box)},
                             _span(context.on_progress, index, len(tiles)))
        paste_faded(result, drawn, tile)
    size = f"{tiles[0].width}×{tiles[0].height}"
    return result, ran, (_("The detail pass ran in {tiles_length} overlapping tiles of {size} "
                           "(IMAGINE_MAX_PIXELS per pass).").format(
                             tiles_length=len(tiles), size=size),)


# --- zoom out and pan (outpainting) ----------------------------------------------------


def outpaint(context: Context, request: ImageRequest, source: Image.Image) -> Outcome:
    """The source on a grown canvas, the new area drawn, the source's pixels put back."""
    target = (floor8(request.width), floor8(request.height))
    place, placed, notes = placement(source, _canvas(request, source), target)
    start, mask = outpaint_inputs(placed, place)
    ran = request.model_copy(update={"width": target[0], "height": target[1], "strength": 1.0})
    drawn = context.draw("inpaint", ran, {"image": start, "mask_image": mask, "strength": 1.0},
                         context.on_progress)
    return Outcome(paste_back(drawn, placed, place), ran, notes)


def _canvas(request: ImageRequest, source: Image.Image) -> Canvas:
    if request.mode == "zoom_out":
        if request.factor is None:
            raise ValueError("zoom_out needs request.factor")
        return zoom_canvas(source.width, source.height, request.factor)
    if request.direction is None:
        raise ValueError("pan needs request.direction")
    return pan_canvas(source.width, source.height, request.direction)


def placement(source: Image.Image, canvas: Canvas, target: tuple[int, int]
               ) -> tuple[Placement, Image.Image, tuple[str, ...]]:
    """Where the source goes on a canvas of the target size: as is when the canvas fits,
    else canvas and source scaled down together."""
    if target == (canvas.width, canvas.height):
        return Placement(*target, canvas.left, canvas.top, *source.size), source, ()
    scale_x, scale_y = target[0] / canvas.width, target[1] / canvas.height
    width = min(target[0], max(1, round(source.width * scale_x)))
    height = min(target[1], max(1, round(source.height * scale_y)))
    left = min(round(canvas.left * scale_x), target[0] - width)
    top = min(round(canvas.top * scale_y), target[1] - height)
    place = Placement(*target, left, top, width, height)
    notes: tuple[str, ...] = ()
    if target[0] * target[1] < canvas.width * canvas.height:
        notes = (_("Scaled down to {target}×{target2} to fit IMAGINE_MAX_PIXELS (the full "
                   "canvas would be {canvas_width}×{canvas_height}).").format(
                     target=target[0], target2=target[1], canvas_width=canvas.width,
                     canvas_height=canvas.height),)
    return place, source.resize((width, height), LANCZOS), notes


# --- inpaint ---------------------------------------------------------------------------


def inpaint(context: Context, request: ImageRequest, source: Image.Image,
            mask: Image.Image) -> Outcome:
    """The white part of `mask` redrawn; the source unchanged beyond a narrow band around it."""
    if mask.size != source.size:
        raise GenerationError(_("the mask is {mask_width}×{mask_height} but the image is "
                                "{source_width}×{source_height}: the mask must have the "
                                "image's own size").format(
                                  mask_width=mask.width, mask_height=mask.height,
                                  source_width=source.width, source_height=source.height))
    redraw = binary_mask(mask)
    if not redraw.any():
        raise GenerationError(_("the mask has no white pixels: paint the region to redraw in "
                                "white (black keeps the image as it is)"))
    strength = request.strength
    steps = max(request.num_inference_steps, math.ceil(1 / strength))
    ran = request.model_copy(update={"width": source.width, "height": source.height,
                                     "num_inference_steps": steps})
    box = _inpaint_box(redraw, context.max_pixels)
    crop = source.crop(box)
    work = fit_within(crop.width, crop.height, context.max_pixels)
    notes: tuple[str, ...] = ()
    if work != (floor8(crop.width), floor8(crop.height)):
        notes = (_("The region was drawn at {work}×{work2} to fit IMAGINE_MAX_PIXELS and "
                   "scaled up to {crop_width}×{crop_height}.").format(
                     work=work[0], work2=work[1], crop_width=crop.width, crop_height=crop.height),)
    region = redraw[box[1]:box[3], box[0]:box[2]]
    drawn = context.draw(
        "inpaint", ran.model_copy(update={"width": work[0], "height": work[1]}),
        {"image": crop.resize(work, LANCZOS) if crop.size != work else crop,
         "mask_image": model_mask(region).resize(work, Image.Resampling.NEAREST),
         "strength": strength},
        context.on_progress)
    whole = source.copy()
    whole.paste(drawn.convert("RGB").resize(crop.size, LANCZOS), box[:2])
    return Outcome(blend(source, whole, feathered_alpha(redraw)), ran, notes)


def _inpaint_box(redraw: np.ndarray, max_pixels: int) -> tuple[int, int, int, int]:
    """The part of the image an inpaint draws: all of it when it fits IMAGINE_MAX_PIXELS,
    else the mask's bounding box with room around it, so a small region of a big image is
    drawn at full resolution."""
    height, width = redraw.shape
    if width * height <= max_pixels:
        return (0, 0, width, height)
    rows, columns = np.nonzero(redraw)
    top, bottom = int(rows.min()), int(rows.max()) + 1
    left, right = int(columns.min()), int(columns.max()) + 1
    # Context for the model to continue from: a quarter of the region, at least 64 px.
    pad = max(INPAINT_CONTEXT, (right - left + bottom - top) // 8)
    return (max(0, left - pad), max(0, top - pad), min(width, right + pad),
            min(height, bottom + pad))


# --- progress --------------------------------------------------------------------------


def _span(on_progress: ProgressCallback | None, index: int, count: int
          ) -> ProgressCallback | None:
    """Progress of part `index` of `count` as progress of the whole."""
    if on_progress is None:
        return None

    def report(step: int, total: int, preview: Image.Image | None) -> None:
        on_progress(index * total + step, count * total, preview)

    return report


def _tile_progress(context: Context) -> Callable[[int, int], None] | None:
    on_progress = context.on_progress
    if on_progress is None:
        return None
    return lambda done, total: on_progress(done, total, None)


def _check_cancel(context: Context, message: str) -> None:
    if context.should_cancel is not None and context.should_cancel():
        raise GenerationCancelled(message)
