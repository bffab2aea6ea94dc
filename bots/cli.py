"""`imagine` — the command line. Each command imports only what it needs (no torch in bots)."""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bots.cli_audit import audit
from bots.cli_doctor import doctor
from bots.cli_images import IMAGE_COMMANDS
from bots.cli_jobs import jobs
from bots.cli_ops import OPS_COMMANDS
from bots.cli_recall import recall
from bots.cli_safety import judge, warning
from bots.cli_storage import storage
from settings import Settings, load_settings
from settings.errors import ImagineError
from settings.i18n import _
from tasks.names import GENERATE_QUEUE, QUEUES

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from bots.limits import Limits
    from generator.request import ImageRequest

# How `imagine up` starts its parts: this same program, with the same interpreter.
SELF_COMMAND = (sys.executable, "-m", "bots.cli")


def _settings() -> Settings:
    try:
        return load_settings()
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Self-hosted /imagine for Slack, Discord and Markdown prompt URLs.

    Configuration comes from IMAGINE_* environment variables and a .env file; see the README.
    """


@cli.command()
@click.argument("prompt")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("out.png"), show_default=True,
              help="Where to write the image; image i>1 of --n gets a -i suffix.")
@click.option("--image", "image_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from this image (an image prompt; --strength 0-1 in the prompt).")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --image: redraw only the parts this mask paints white (inpaint).")
@click.option("--control", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The control image of --cn KIND in the prompt (ControlNet).")
def generate(prompt: str, output: Path, image_path: Path | None, mask: Path | None,
             control: Path | None) -> None:
    """Draw one prompt locally (no queue), e.g. "a red fox --ar 3:2 --seed 1"."""
    from tqdm import tqdm  # noqa: PLC0415

    from bots.cli_language import prepared_request  # noqa: PLC0415
    from bots.grammar import parse  # noqa: PLC0415
    from bots.limits import Limits  # noqa: PLC0415
    from generator.engine import Engine  # noqa: PLC0415
    from tasks.core.queue import random_seed  # noqa: PLC0415

    if mask is not None and image_path is None:
        raise click.UsageError("--mask needs --image: the image whose white-masked parts to "
                               "redraw.")
    settings = _settings()
    try:
        limits = Limits.from_settings(settings)
        sources = _Sources()
        if control is not None:
            request = _controlled(prompt, control, image_path, mask, settings, limits, sources)
        else:
            request = parse(prompt, limits, image=image_path is not None)
        if image_path is not None and control is None:
            request = _from_local_image(request, image_path, mask, settings, limits, sources)
        if request.seed is None:
            request = request.with_seed(random_seed())
        engine = Engine.from_settings(settings)
        request = prepared_request(request, settings, engine.device)  # translate, enhance
        with tqdm(total=request.num_inference_steps, unit="step", desc="drawing") as bar:
            def progress(step: int, total: int, _preview: object = None) -> None:
                bar.total = total
                bar.n = step
                bar.refresh()

            images = engine.generate(request, on_progress=progress,
                                     load_image=lambda name: _opened(sources[name]))
        verdicts = judge(settings, engine.safety, request, images)  # image safety (#15)
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    for index, (image, verdict) in enumerate(zip(images, verdicts, strict=True)):
        path = output if index == 0 else output.with_name(f"{output.stem}-{index + 1}{output.suffix}")
        if not (verdict.flagged and verdict.action == "block"):
            path.write_bytes(image.png)
            click.echo(f"seed {image.seed} → {path}")
        flagged = warning(verdict, index + 1, str(path))
        if flagged:
            click.echo(flagged, err=True)


def _from_local_image(request: ImageRequest, image: Path, mask: Path | None,
                      settings: Settings, limits: Limits, sources: dict[str, bytes]
                      ) -> ImageRequest:
    """The request drawn from a local image (img2img), or inpainted with `mask`, checked like
    an upload; the prepared PNGs go into `sources` by their storage names."""
    from bots.grammar import given_strength  # noqa: PLC0415
    from generator.source_images import mask_for, prepare_source  # noqa: PLC0415
    from tasks.core.storage import Storage  # noqa: PLC0415

    data = image.read_bytes()
    # A local file may be as large as an upload; an inpaint keeps the image's size.
    pixels = (settings.max_upscale_pixels if mask is not None
              else min(request.width * request.height, limits.max_pixels))
    source = prepare_source(data, max_bytes=settings.max_upload_bytes, max_pixels=pixels)
    for note in source.notes:
        click.echo(note, err=True)
    name = Storage.name_for(source.png)
    sources[name] = source.png
    if mask is None:
        return request.from_image(name, source.width, source.height, given_strength(request))
    painted = mask_for(mask.read_bytes(), source, max_bytes=settings.max_upload_bytes)
    sources[Storage.name_for(painted)] = painted
    return request.inpainted(name, Storage.name_for(painted), request.seed, source.width,
                             source.height)


class _Sources(dict[str, bytes]):
    """The images a local job starts from, by storage name (the engine's load_image)."""

    def put(self, data: bytes) -> str:
        from tasks.core.storage import Storage  # noqa: PLC0415

        name = Storage.name_for(data)
        self[name] = data
        return name


def _controlled(prompt: str, control: Path, image: Path | None, mask: Path | None,
                settings: Settings, limits: Limits, sources: _Sources) -> ImageRequest:
    """The request of a prompt with --cn and its control image (and an image prompt)."""
    from bots.errors import PromptError  # noqa: PLC0415
    from bots.grammar import parse_with_control  # noqa: PLC0415
    from bots.image_prompts import Prepared, controlled  # noqa: PLC0415

    request, cn = parse_with_control(prompt, limits, image=image is not None)
    if cn is None:
        raise PromptError(_("--control needs --cn KIND in the prompt (e.g. --cn canny): say "
                            "which ControlNet the image guides."))
    if mask is not None:
        raise PromptError(_("--control does not go with --mask: an inpaint takes no ControlNet."))
    if image is not None:
        request = _from_local_image(request, image, None, settings, limits, sources)
    prepared = controlled(Prepared(request, ()), cn, control.read_bytes(), limits, settings,
                          sources, keep_size=image is not None)
    for note in prepared.notes:
        click.echo(note, err=True)
    return prepared.request


def _opened(png: bytes) -> PILImage:
    from PIL import Image  # noqa: PLC0415

    return Image.open(io.BytesIO(png))


@cli.group()
def model() -> None:
    """Model utilities."""


@model.command("tiny")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--single-file", is_flag=True,
              help="Also write a single-file .safetensors checkpoint with its config folder.")
def model_tiny(directory: Path, single_file: bool) -> None:
    """Write the small offline test model (random weights, real configs) to DIRECTORY."""
    from generator.tiny_model import build_tiny_model  # noqa: PLC0415
    from generator.tiny_upscaler import UPSCALER_FILE_NAME, build_tiny_upscaler  # noqa: PLC0415

    path = build_tiny_model(directory, single_file=single_file)
    click.echo(f"tiny model written to {path}; use it with IMAGINE_MODEL={path}")
    click.echo(f"tiny NSFW classifier written to {directory / 'nsfw'}; use it with "
               f"IMAGINE_NSFW_MODEL={directory / 'nsfw'}")
    upscaler = build_tiny_upscaler(directory / UPSCALER_FILE_NAME)
    click.echo(f"tiny 2× upscaler written to {upscaler}; use it with IMAGINE_UPSCALER={upscaler}")
    _tiny_adapters(directory)


def _tiny_adapters(directory: Path) -> None:
    """LoRAs, an embedding and ControlNets that fit the tiny model, beside it."""
    import json  # noqa: PLC0415

    from generator.tiny_language import build_tiny_language_models  # noqa: PLC0415

    translator, enhancer = build_tiny_language_models(directory)
    click.echo(f"tiny translation and enhancement models written; use them with "
               f"IMAGINE_TRANSLATE_MODEL={translator} IMAGINE_ENHANCE_MODEL={enhancer}")
    from generator.tiny_adapters import build_tiny_embeddings, build_tiny_loras  # noqa: PLC0415
    from generator.tiny_controlnet import build_tiny_controlnets  # noqa: PLC0415

    build_tiny_loras(directory / "loras", directory)
    click.echo(f"tiny LoRAs written to {directory / 'loras'}; use them with "
               f"IMAGINE_LORA_DIR={directory / 'loras'} and --lora tiny-style")
    build_tiny_embeddings(directory / "embeddings", directory)
    click.echo(f"tiny embedding written to {directory / 'embeddings'}; use it with "
               f"IMAGINE_EMBEDDINGS_DIR={directory / 'embeddings'} and tiny-token in a prompt")
    folders = build_tiny_controlnets(directory / "controlnets", directory)
    kinds = json.dumps({kind: str(folder) for kind, folder in folders.items()})
    click.echo(f"tiny ControlNets written to {directory / 'controlnets'}; use them with "
               f"IMAGINE_CONTROLNETS='{kinds}'")


@cli.command()
@click.option("--queues", type=click.Choice(list(QUEUES)), default=GENERATE_QUEUE,
              show_default=True, help="generate: one GPU process; deliver: many I/O threads; "
                                      "text: prompt translation and enhancement (IMAGINE_TEXT_QUEUE).")
@click.option("--concurrency", type=int, default=None,
              help="Threads of a deliver worker (default 16); a generate worker always uses 1.")
@click.option("--gpu", type=click.IntRange(min=0), default=None,
              help="Generate worker: draw on this GPU (IMAGINE_DEVICE=cuda:N).")
@click.option("--models", default=None,
              help="Generate worker: the models it serves, comma-separated "
                   "(IMAGINE_WORKER_MODELS; default all).")
@click.option("--loglevel", default="info", show_default=True)
def worker(queues: str, concurrency: int | None, gpu: int | None, models: str | None,
           loglevel: str) -> None:
    """Run a Celery worker for one queue (one generate worker per GPU)."""
    from bots.adapters import delivery_adapters  # noqa: PLC0415
    from tasks.worker.main import run_worker  # noqa: PLC0415

    _logging(loglevel)
    overrides: dict[str, object] = {}
    if gpu is not None:
        overrides["device"] = f"cuda:{gpu}"
    if models is not None:
        overrides["worker_models"] = models
    try:
        run_worker(load_settings(**overrides), queues, adapters=delivery_adapters(),
                   concurrency=concurrency, loglevel=loglevel)
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None


@cli.command()
@click.option("--loglevel", default="info", show_default=True)
def web(loglevel: str) -> None:
    """Serve the HTTP app (prompt URLs, REST API, Slack events, health, metrics)."""
    from bots.web.server import serve  # noqa: PLC0415

    _logging(loglevel)
    serve(_settings())


@cli.command("sign-url")
@click.argument("prompt")
def sign_url(prompt: str) -> None:
    """Print the embed URL of "PROMPT --flags", signed with IMAGINE_URL_SECRET when set."""
    from bots.web.signing import signed_url  # noqa: PLC0415

    settings = _settings()
    try:
        url = signed_url(settings, prompt)
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    if settings.url_secret is None:
        click.echo("note: IMAGINE_URL_SECRET is not set, so the URL is not signed "
                   "(the server then draws any prompt URL)", err=True)
    click.echo(url)


@cli.command()
@click.option("--loglevel", default="info", show_default=True)
def slack(loglevel: str) -> None:
    """Run the Slack bot in Socket Mode (SLACK_APP_TOKEN and SLACK_BOT_TOKEN)."""
    from bots.slack.app import run_socket_mode  # noqa: PLC0415

    _logging(loglevel)
    sys.exit(run_socket_mode(_settings()))


@cli.command()
@click.option("--loglevel", default="info", show_default=True)
@click.option("-v", "--verbose", is_flag=True,
              help="Also print every part's log here (they always go to DATA/logs/<part>.log).")
def up(loglevel: str, verbose: bool) -> None:
    """Everything on one machine: Redis (embedded if IMAGINE_REDIS_URL is unset), workers, web, bots."""
    from tasks.local.up import run_up  # noqa: PLC0415

    try:
        sys.exit(run_up(_settings(), command=SELF_COMMAND, loglevel=loglevel, verbose=verbose))
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None


@cli.command("discord")
@click.option("--sync", is_flag=True,
              help="Register the slash commands (globally, or in DISCORD_GUILD_ID) and exit.")
@click.option("--loglevel", default="info", show_default=True)
def discord_bot(sync: bool, loglevel: str) -> None:
    """Run the Discord bot (/imagine, @mentions, buttons); --sync registers its commands."""
    from bots.discord.main import run_bot, sync_commands  # noqa: PLC0415

    _logging(loglevel)
    settings = _settings()
    try:
        if sync:
            names = sync_commands(settings)
            where = f"in guild {settings.discord_guild_id}" if settings.discord_guild_id else "globally"
            click.echo(f"registered {', '.join('/' + n for n in names)} {where}")
            return
        run_bot(settings)
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None


for _command in (*IMAGE_COMMANDS, recall, *OPS_COMMANDS, storage, doctor, jobs, audit):
    cli.add_command(_command)


def main() -> None:
    # Tokenizers and the hub must never reach for the network at run time.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    cli()


if __name__ == "__main__":
    main()
