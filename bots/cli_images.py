"""`imagine upscale | zoom | pan`: the image operations of the chat buttons on a local file.

They run the engine in this process, like `imagine generate`, with the sizes the buttons
would plan (generator.geometry, the same limits), and print what the result's notes say.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from generator.geometry import DIRECTIONS, ZOOM_FACTORS, grown_size, pan_canvas, upscale_size, zoom_canvas
from generator.request import ImageRequest
from settings import Settings, load_settings
from settings.errors import ImagineError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from generator.engine import Engine, GeneratedImage

# Upscale's detail pass needs some prompt; a file without one in its metadata gets this.
DETAIL_PROMPT = "highly detailed, sharp focus"
# plan(request, source name, seed, width, height, settings) -> the operation's request
Plan = Callable[[ImageRequest, str, int, int, int, Settings], ImageRequest]

_input = click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
_output = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                       required=True, help="Where to write the result (PNG).")
_prompt = click.option("--prompt", default=None,
                       help="What the image shows, with --flags (--seed, --steps…); default: "
                            "the prompt in the image's own metadata.")


@click.command()
@_input
@_output
@click.option("--creative", is_flag=True,
              help="Upscale (Creative): redraw details with an img2img pass afterwards.")
@click.option("--factor", type=click.IntRange(2, 4), default=None,
              help="Each side this many times longer (default IMAGINE_UPSCALE_FACTOR).")
@_prompt
def upscale(image: Path, output: Path, creative: bool, factor: int | None,
            prompt: str | None) -> None:
    """Enlarge IMAGE with IMAGINE_UPSCALER (or Lanczos and a light detail pass)."""

    def plan(request: ImageRequest, name: str, seed: int, width: int, height: int,
             settings: Settings) -> ImageRequest:
        times = factor or settings.upscale_factor
        planned = upscale_size(width, height, times, settings.max_upscale_pixels)
        return request.upscaled(name, seed, planned.width, planned.height, times,
                                creative=creative)

    _run(image, output, prompt, plan, needs_prompt=False, enlarges=True)


@click.command()
@_input
@_output
@click.option("--factor", type=click.Choice([f"{f:g}" for f in ZOOM_FACTORS]), default="2",
              show_default=True, help="How much larger the canvas is on each side.")
@_prompt
def zoom(image: Path, output: Path, factor: str, prompt: str | None) -> None:
    """Zoom out: IMAGE in the middle of a larger canvas, the new area drawn."""

    def plan(request: ImageRequest, name: str, seed: int, width: int, height: int,
             settings: Settings) -> ImageRequest:
        planned = grown_size(zoom_canvas(width, height, float(factor)), settings.max_pixels)
        return request.zoomed_out(name, seed, planned.width, planned.height, float(factor))

    _run(image, output, prompt, plan, needs_prompt=True, enlarges=False)


@click.command()
@_input
@_output
@click.option("--direction", type=click.Choice(DIRECTIONS), required=True,
              help="Which side grows (by half the image).")
@_prompt
def pan(image: Path, output: Path, direction: str, prompt: str | None) -> None:
    """Pan: extend IMAGE towards one side, the new area drawn."""

    def plan(request: ImageRequest, name: str, seed: int, width: int, height: int,
             settings: Settings) -> ImageRequest:
        side = next(known for known in DIRECTIONS if known == direction)
        planned = grown_size(pan_canvas(width, height, side), settings.max_pixels)
        return request.panned(name, seed, planned.width, planned.height, side)

    _run(image, output, prompt, plan, needs_prompt=True, enlarges=False)


IMAGE_COMMANDS = (upscale, zoom, pan)


def _run(image: Path, output: Path, prompt: str | None, plan: Plan, *, needs_prompt: bool,
         enlarges: bool) -> None:
    from PIL import Image  # noqa: PLC0415

    from generator.engine import Engine  # noqa: PLC0415
    from generator.source_images import prepare_source  # noqa: PLC0415

    try:
        settings = load_settings()
        data = image.read_bytes()
        recorded_prompt, recorded_seed = _recorded(data)
        if not (prompt or recorded_prompt) and needs_prompt:
            raise click.ClickException(f"{image} has no prompt in its metadata: say what the "
                                       "image shows with --prompt \"…\"")
        # Like the buttons, an operation keeps the image's own seed unless told otherwise.
        request = _request(prompt or recorded_prompt or DETAIL_PROMPT, recorded_seed, settings)
        # A super-resolution model takes sources far larger than one diffusion pass draws.
        limit = settings.max_upscale_pixels if enlarges else settings.max_pixels
        source = prepare_source(data, max_bytes=settings.max_upload_bytes, max_pixels=limit)
        name = _storage_name(source.png)
        request = plan(request, name, request.seed or 0, source.width, source.height, settings)
        engine = Engine.from_settings(settings)
        images = _draw(engine, request, lambda _name: Image.open(io.BytesIO(source.png)))
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    result = images[0]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(result.png)
    for note in (*source.notes, *result.notes):
        click.echo(f"note: {note}", err=True)
    click.echo(f"{result.width}×{result.height}, seed {result.seed} → {output}")


def _request(text: str, seed: int | None, settings: Settings) -> ImageRequest:
    from bots.grammar import parse  # noqa: PLC0415
    from bots.limits import Limits  # noqa: PLC0415
    from tasks.core.queue import random_seed  # noqa: PLC0415

    request = parse(text, Limits.from_settings(settings))
    if request.seed is not None:
        return request
    return request.with_seed(random_seed() if seed is None else seed)


def _recorded(data: bytes) -> tuple[str, int | None]:
    """The prompt and seed in the PNG's A1111 `parameters`, where it has them."""
    from generator.png import read_parameters  # noqa: PLC0415

    lines = (read_parameters(data) or "").splitlines()
    kept = []
    for line in lines[:-1]:
        if line.startswith("Negative prompt:"):
            break
        kept.append(line)
    seed = re.search(r"(?:^|, )Seed: (\d+)(?:,|$)", lines[-1]) if lines else None
    return "\n".join(kept).strip(), int(seed.group(1)) if seed else None


def _storage_name(png: bytes) -> str:
    from tasks.core.storage import Storage  # noqa: PLC0415

    return Storage.name_for(png)


def _draw(engine: Engine, request: ImageRequest,
          load_image: Callable[[str], PILImage]) -> list[GeneratedImage]:
    from tqdm import tqdm  # noqa: PLC0415

    with tqdm(total=request.num_inference_steps, unit="step", desc=request.mode) as bar:
        def progress(step: int, total: int, _preview: object = None) -> None:
            bar.total = total
            bar.n = step
            bar.refresh()

        return engine.generate(request, on_progress=progress, load_image=load_image)
