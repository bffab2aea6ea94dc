"""Image operations: seconds per result with our Engine against the bare library calls.

For each operation, the same work twice, interleaved (ABBA) so drift hits both alike:
- upscale: `Engine.generate` of an Upscale (Subtle) with IMAGINE_UPSCALER against spandrel's
  model called on the whole image;
- outpaint: a Zoom Out 2× against diffusers' inpainting pipeline (`from_pipe`) called with
  the same start image, mask, size, steps and seed;
- inpaint: a Vary (Region) against the same inpainting call with the same mask;
- img2img: an image prompt against the img2img pipeline with the same arguments.
Every result is a PNG file in the end, so both sides pay for encoding one (the bare side
`image.save`); ours also pays its callbacks, tiling, masks and compositing.

    python -m bench.operations [--model DIR] [--upscaler FILE] [--size 256] [--steps 20]
                               [--rounds 5] [--threads N]

The tiny model and the tiny upscaler by default. The ratios of the last line are medians of
paired CPU-time ratios (this process's CPU seconds, ours / bare): on a machine shared with
other work, wall time also counts everyone else's, and overhead is work we compute. The
wall-time figures are printed above it. Last line:
`upscale_ratio=… outpaint_ratio=… inpaint_ratio=… img2img_ratio=…` (goal: each ≤ 1.05).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from bench.generator_overhead import median, timed
from generator.compositing import binary_mask, model_mask, outpaint_inputs
from generator.geometry import zoom_canvas
from generator.operations import placement
from generator.request import ImageRequest

PROMPT = "a lighthouse on a cliff at dusk, detailed"
SEED = 3


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Bare:
    """The bare diffusers pipelines and spandrel model, loaded the way their docs show."""

    def __init__(self, model: Path, upscaler: Path) -> None:
        from diffusers import (
            AutoPipelineForImage2Image,
            AutoPipelineForInpainting,
            StableDiffusionPipeline,
        )
        from spandrel import ModelLoader

        self.text2image = StableDiffusionPipeline.from_pretrained(model)
        self.image2image = AutoPipelineForImage2Image.from_pipe(self.text2image)
        self.inpaint = AutoPipelineForInpainting.from_pipe(self.text2image)
        for pipe in (self.text2image, self.image2image, self.inpaint):
            pipe.set_progress_bar_config(disable=True)
        self.upscaler = ModelLoader().load_from_file(upscaler).eval()

    def enlarge(self, image: Image.Image) -> bytes:
        tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
        output = self.upscaler(tensor)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0)
        return png(Image.fromarray(output.numpy()))

    def draw(self, pipe: Any, request: ImageRequest, **inputs: Any) -> bytes:
        image = pipe(prompt=request.prompt, negative_prompt=None,
                     num_inference_steps=request.num_inference_steps,
                     guidance_scale=request.guidance_scale, num_images_per_prompt=1,
                     generator=[torch.Generator("cpu").manual_seed(SEED)], **inputs).images[0]
        return png(image)


def compare_pair(ours: Callable[[], object], bare: Callable[[], object], rounds: int
                 ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Interleaved (wall, cpu) timings of both, after one untimed call of each."""
    ours()
    bare()
    mine: list[tuple[float, float]] = []
    base: list[tuple[float, float]] = []
    for index in range(rounds):
        pair = [(mine, ours), (base, bare)]
        for samples, call in pair if index % 2 == 0 else pair[::-1]:
            samples.append(timed(call, lambda: None))
    return mine, base


def cases(engine: Any, bare: Bare, source: Image.Image, mask: Image.Image, steps: int
          ) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name → (ours, bare) for each operation, with the same arguments on both sides."""
    stored = {"source": source, "mask": mask}
    size = source.width
    parent = ImageRequest(prompt=PROMPT, width=size, height=size, seed=SEED,
                          num_inference_steps=steps)

    def ours(request: ImageRequest) -> Callable[[], object]:
        return lambda: engine.generate(request, load_image=stored.__getitem__,
                                       on_progress=lambda *_: None, should_cancel=lambda: False)

    canvas = zoom_canvas(size, size, 2.0)
    zoom = parent.zoomed_out("source", SEED, canvas.width, canvas.height, 2.0)
    place, placed, _ = placement(source, canvas, (canvas.width, canvas.height))
    start, outpaint_mask = outpaint_inputs(placed, place)
    region = parent.inpainted("source", "mask", SEED, size, size)
    image_prompt = parent.from_image("source", size, size)
    i2i_steps = max(steps, int(np.ceil(1 / image_prompt.strength)))
    return {
        "upscale": (ours(parent.upscaled("source", SEED, 2 * size, 2 * size, 2)),
                    lambda: bare.enlarge(source)),
        "outpaint": (ours(zoom), lambda: bare.draw(
            bare.inpaint, zoom, image=start, mask_image=outpaint_mask, strength=1.0,
            width=canvas.width, height=canvas.height)),
        "inpaint": (ours(region), lambda: bare.draw(
            bare.inpaint, region, image=source, mask_image=model_mask(binary_mask(mask)),
            strength=1.0, width=size, height=size)),
        "img2img": (ours(image_prompt), lambda: bare.draw(
            bare.image2image, image_prompt.model_copy(update={"num_inference_steps": i2i_steps}),
            image=source, strength=image_prompt.strength)),
    }


def run(model: Path, upscaler: Path, size: int, steps: int, rounds: int) -> None:
    from generator.engine import Engine

    engine = Engine({"default": str(model)}, device="cpu", upscaler=upscaler)
    engine.warm_up()
    bare = Bare(model, upscaler)
    source = bare.text2image(prompt=PROMPT, width=size, height=size, num_inference_steps=steps,
                             generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    yy, xx = np.mgrid[:size, :size]
    circle = (xx - size / 3) ** 2 + (yy - size / 2) ** 2 <= (size / 5) ** 2
    mask = Image.fromarray(circle.astype(np.uint8) * 255)
    print(f"{model.name}, CPU, {torch.get_num_threads()} torch threads, {size}px source, "
          f"{steps} steps, {rounds} rounds")
    results: dict[str, float] = {}
    for name, (mine_fn, bare_fn) in cases(engine, bare, source, mask, steps).items():
        mine, base = compare_pair(mine_fn, bare_fn, rounds)
        paired = statistics.median(m[0] / b[0] for m, b in zip(mine, base, strict=True))
        cpu = statistics.median(m[1] / b[1] for m, b in zip(mine, base, strict=True))
        fastest = min(m[0] for m in mine) / min(b[0] for b in base)
        # On a shared machine wall time also counts other processes' work; this process's
        # CPU time counts only what each side computes, which is what overhead is.
        results[name] = cpu
        print(f"{name:>9}: ours {median(mine):.3f} s, bare {median(base):.3f} s (wall medians; "
              f"paired ratio {paired:.3f}, fastest-round ratio {fastest:.3f}); CPU time: ours "
              f"{median(mine, 1):.3f} s, bare {median(base, 1):.3f} s, paired ratio {cpu:.3f}")
    print(" ".join(f"{name}_ratio={results[name]:.3f}"
                   for name in ("upscale", "outpaint", "inpaint", "img2img")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="diffusers folder (default: tiny)")
    parser.add_argument("--upscaler", type=Path, default=None,
                        help="super-resolution model file (default: the tiny one)")
    parser.add_argument("--size", type=int, default=256, help="source side in pixels")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per operation")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="imagine-bench-operations-") as work:
        model = args.model
        if model is None:
            from generator.tiny_model import build_tiny_model

            model = build_tiny_model(Path(work) / "tiny")
        upscaler = args.upscaler
        if upscaler is None:
            from generator.tiny_upscaler import build_tiny_upscaler

            upscaler = build_tiny_upscaler(Path(work) / "upscaler.safetensors")
        run(model, upscaler, args.size, args.steps, args.rounds)


if __name__ == "__main__":
    main()
