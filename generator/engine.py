"""The generator's one entry point for the worker: requests in, PNG bytes out.

An `Engine` lives as long as its worker process. It loads each model the first time it is
asked for (or at `warm_up`) and keeps the most recently used ones (generator.model_cache),
and runs every request on them with the same pipeline objects and cached schedulers, so a
call costs what the bare diffusers call costs plus the PNG encoding. Every diffusion pass
goes through generator.passes, which applies the request's ControlNet, embeddings, LoRAs
and prompt weights.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from generator import operations, speedups
from generator.errors import GenerationCancelled, ModelError
from generator.geometry import floor8
from generator.loading import resolve_device, resolve_dtype
from generator.model_cache import LoadedModel, ModelCache, ModelLoad, StatusCallback, load_model
from generator.passes import Adapters, controlled_pass, draw, step_callback
from generator.png import model_label, parameters_text
from generator.previews import parse_decoders, preview_maker
from generator.progress import Previews
from generator.request import SEED_MAX, ImageRequest
from generator.results import GeneratedImage, is_pipeline_flagged
from generator.safety import SafetyModel
from generator.samplers import sampler_label
from generator.speedups import SpeedOptions
from settings.i18n import _

if TYPE_CHECKING:
    from generator.batching import BatchMember, BatchOutcome
    from generator.control import ControlNets
    from generator.previews import PreviewMaker
    from generator.upscaler import Upscaler
    from settings import Settings

# IMAGINE_MAX_PIXELS' default: the most one diffusion pass draws at once.
DEFAULT_MAX_PIXELS = 1024 * 1024

ProgressCallback = Callable[[int, int, "Image.Image | None"], None]


class Engine:
    """Loads models lazily, once per process, and turns ImageRequests into PNGs."""

    def __init__(
        self,
        sources: Mapping[str, str],
        *,
        device: str = "auto",
        dtype: str = "auto",
        torch_threads: int | None = None,
        upscaler: Path | str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        families: Mapping[str, str | None] | None = None,
        lora_dir: Path | None = None,
        embeddings_dir: Path | None = None,
        controlnets: Mapping[str, str | Mapping[str, str]] | None = None,
        annotators: Mapping[str, str] | None = None,
        max_loaded_models: int = 2,
        model_memory_gb: float | None = None,
        speed: SpeedOptions | None = None,
        preview_interval: float = 0.0,
        preview_decoders: Mapping[str, str] | None = None,
        nsfw_model: str | None = None,
        nsfw_labels: Sequence[str] = (),
    ) -> None:
        # IMAGINE_COMPILE and the other speed options, applied to each model as it loads.
        self.speed = speed or SpeedOptions()
        self.sources = dict(sources)
        # The catalogue's families; a model without one is judged by its pipeline at load.
        self.families = dict(families or {})
        # IMAGINE_UPSCALER: a super-resolution model file, loaded on first use or warm_up.
        self.upscaler_path = Path(upscaler) if upscaler else None
        self._upscaler: Upscaler | None = None
        # Detail passes of big upscales run in tiles of at most this many pixels.
        self.max_pixels = max_pixels
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.models = ModelCache(self._load, self.device, max_loaded=max_loaded_models,
                                 memory_gb=model_memory_gb)
        self.adapters = Adapters(lora_dir, embeddings_dir,
                                 _control_nets(controlnets, annotators, self.device, self.dtype))
        # Pipelines and schedulers hold per-call state: one generation at a time.
        self._lock = threading.RLock()
        # IMAGINE_PREVIEW_INTERVAL (0: off) and IMAGINE_PREVIEW_DECODER ("*": every family).
        self.preview_interval = preview_interval
        self.preview_decoders = dict(preview_decoders or {})
        self._preview_makers: dict[str, PreviewMaker] = {}
        # IMAGINE_NSFW_MODEL, loaded on first use or warm_up, used on the finishing thread.
        self.safety = SafetyModel(nsfw_model, nsfw_labels, self.device, self.dtype)

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        return cls(
            settings.model_sources,
            device=settings.device,
            dtype=settings.dtype,
            torch_threads=settings.torch_threads,
            upscaler=settings.upscaler,
            max_pixels=settings.max_pixels,
            families={name: entry.family for name, entry in settings.catalogue.items()},
            lora_dir=settings.lora_dir,
            embeddings_dir=settings.embeddings_dir,
            controlnets=settings.controlnets,
            annotators=settings.annotators,
            max_loaded_models=settings.max_loaded_models,
            model_memory_gb=settings.model_memory_gb,
            speed=SpeedOptions.from_settings(settings),
            preview_interval=settings.preview_interval,
            preview_decoders=parse_decoders(settings.preview_decoder),
            nsfw_model=settings.nsfw_model,
            nsfw_labels=settings.nsfw_labels,
        )

    def pipeline(self, model_name: str = "default") -> Any:
        """The text-to-image pipeline of `model_name`, loaded on first use."""
        return self._model(model_name).text2image

    def warm_up(self, model_name: str = "default") -> None:
        """Load `model_name` (and IMAGINE_UPSCALER) now, at worker start, rather than on
        the first job, and compile it then with a warm-up generation (IMAGINE_COMPILE)."""
        with self._lock:
            speedups.warm_up(self._model(model_name).text2image, self.speed)
        self.upscaler()
        self.safety.get()

    def take_model_loads(self) -> list[ModelLoad]:
        """The model loads since the last call, with their seconds, for /metrics."""
        return self.models.take_loads()

    def upscaler(self) -> Upscaler | None:
        """The super-resolution model of IMAGINE_UPSCALER, loaded once; None when unset."""
        if self.upscaler_path is None:
            return None
        with self._lock:
            if self._upscaler is None:
                from generator.upscaler import Upscaler  # noqa: PLC0415 - spandrel is slow

                self._upscaler = Upscaler(self.upscaler_path, self.device, self.dtype)
            return self._upscaler

    def previews(self, model: LoadedModel) -> Previews | None:
        """The preview decoding of one run on `model`; None when previews are off."""
        if self.preview_interval <= 0:
            return None
        return Previews(lambda: self._preview_maker(model.family), self.preview_interval)

    def _preview_maker(self, family: str) -> PreviewMaker:
        with self._lock:
            if family not in self._preview_makers:
                self._preview_makers[family] = preview_maker(family, self.preview_decoders,
                                                             self.device, self.dtype)
            return self._preview_makers[family]

    def model_label(self, model_name: str = "default") -> str:
        return model_label(self._source(model_name))

    def generate(
        self,
        request: ImageRequest,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        load_image: Callable[[str], Image.Image] | None = None,
        on_status: StatusCallback | None = None,
    ) -> list[GeneratedImage]:
        """Draw `request.num_images` images; image i uses seed `request.seed + i`.

        `on_progress(step, total, preview)` runs after each denoising step (preview: a small
        picture of the latents at most every preview_interval s, else None);
        `should_cancel()` is asked at the same points and, when true, stops the run with
        GenerationCancelled (an upscale also reports and checks per super-resolution tile).
        `load_image(name)` supplies the source image (and an inpaint's mask, and a
        ControlNet's control image) of every mode but txt2img; operations
        (generator.operations) keep the request's seed and return their notes
        with the image. `on_status("loading model NAME…")` is said before a model loads.
        """
        first_seed = request.seed
        if first_seed is None:
            raise ValueError("request.seed is None: pass request.seeded()")
        if should_cancel is not None and should_cancel():
            raise GenerationCancelled(_("cancelled before it started"))
        seeds = [(first_seed + i) % (SEED_MAX + 1) for i in range(request.num_images)]
        with self._lock:
            model = self._model(request.model, on_status)
            if request.mode in operations.OPERATION_MODES:
                return [self._operate(model, request.with_seed(seed), on_progress,
                                      should_cancel, load_image) for seed in seeds]
            pipe, request, inputs = self._prepare(model, request, load_image)
            self._use_sampler(model, pipe, request.sampler)
            pipe, control = controlled_pass(pipe, model.family, request, self.adapters,
                                            load_image)
            # CPU generators make the same seed give the same latents on every device.
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            notes: list[str] = []
            images = draw(pipe, request, self.adapters, notes, **inputs, **control,
                          **step_callback(on_progress, should_cancel, self.previews(model)),
                          num_images_per_prompt=request.num_images, generator=generators)
        label = sampler_label(request.sampler)
        results = []
        for image, seed in zip(images, seeds, strict=True):
            text = parameters_text(request, seed, model.label, sampler_label=label)
            results.append(GeneratedImage(None, seed, image.width, image.height, text,
                                          tuple(notes), image=image))
        return results

    def generate_batch(
        self,
        members: Sequence[BatchMember],
        *,
        load_image: Callable[[str], Image.Image] | None = None,
    ) -> list[BatchOutcome]:
        """Draw several jobs that share one batch_key in one pipeline call; one outcome per
        member, in order (generator.batch_draw says how prompts, cancels and failures of one
        member are kept from the others). One member runs exactly as `generate`."""
        from generator.batch_draw import draw_batch  # noqa: PLC0415

        with self._lock:
            return draw_batch(self, members, load_image)

    # --- loading -------------------------------------------------------------------------

    def _source(self, model_name: str) -> str:
        try:
            return self.sources[model_name]
        except KeyError:
            known = ", ".join(sorted(self.sources)) or "none"
            raise ModelError(_("unknown model {model_name!r}: this worker has {known}").format(
                                 model_name=model_name, known=known)) from None

    def _model(self, model_name: str, on_status: StatusCallback | None = None) -> LoadedModel:
        self._source(model_name)  # an unknown name fails before anything is said or evicted
        with self._lock:
            return self.models.get(model_name, on_status)

    def _load(self, model_name: str) -> LoadedModel:
        return load_model(model_name, self._source(model_name),
                          self.families.get(model_name), self.dtype, self.speed)

    def _image2image(self, model: LoadedModel) -> Any:
        if "image2image" not in model.derived:
            from diffusers import AutoPipelineForImage2Image

            model.derived["image2image"] = _derived(AutoPipelineForImage2Image, model,
                                                    "image-to-image")
        return model.derived["image2image"]

    def _inpainting(self, model: LoadedModel) -> Any:
        # A 4-channel (non-inpainting) UNet works too: diffusers then blends the known
        # latents back at every step.
        if "inpaint" not in model.derived:
            from diffusers import AutoPipelineForInpainting

            model.derived["inpaint"] = _derived(AutoPipelineForInpainting, model, "inpainting")
        return model.derived["inpaint"]

    # --- one generation ------------------------------------------------------------------

    def _prepare(
        self,
        model: LoadedModel,
        request: ImageRequest,
        load_image: Callable[[str], Image.Image] | None,
    ) -> tuple[Any, ImageRequest, dict[str, Any]]:
        """The pipeline, the request as it will really run, and the mode's own arguments."""
        if request.mode == "txt2img":
            return model.text2image, request, {"width": request.width, "height": request.height}
        source = _source(request.source_image, load_image, request.mode)
        # An image prompt or a variation: the front end fitted the source to width×height.
        width, height = floor8(request.width), floor8(request.height)
        if source.size != (width, height):
            source = source.resize((width, height), Image.Resampling.LANCZOS)
        # img2img runs int(steps × strength) steps; diffusers refuses zero.
        steps = max(request.num_inference_steps, math.ceil(1 / request.strength))
        request = request.model_copy(
            update={"width": width, "height": height, "num_inference_steps": steps}
        )
        return self._image2image(model), request, {"image": source, "strength": request.strength}

    def _operate(
        self,
        model: LoadedModel,
        request: ImageRequest,
        on_progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
        load_image: Callable[[str], Image.Image] | None,
    ) -> GeneratedImage:
        """One result of an image operation (upscale, zoom out, pan, inpaint)."""
        source = _source(request.source_image, load_image, request.mode)
        mask = None
        if request.mask_image is not None:
            mask = _source(request.mask_image, load_image, request.mode).convert("L")
        uses_upscaler = request.mode in ("upscale", "upscale_creative")
        notes: list[str] = []
        flagged: list[bool] = []  # per pass: withheld by the pipeline's safety checker
        context = operations.Context(
            draw=lambda kind, ran, inputs, progress: self._draw(
                model, kind, ran, inputs, notes, progress, should_cancel, flagged),
            upscaler=self.upscaler() if uses_upscaler else None,
            max_pixels=self.max_pixels,
            on_progress=on_progress,
            should_cancel=should_cancel,
        )
        outcome = operations.run(context, request, source, mask)
        seed = request.seed or 0
        text = parameters_text(outcome.request, seed, model.label,
                               sampler_label=sampler_label(request.sampler))
        image = outcome.image
        notes = list(dict.fromkeys([*outcome.notes, *notes]))
        return GeneratedImage(None, seed, image.width, image.height, text, tuple(notes),
                              image=image, pipeline_flagged=any(flagged) or None)

    def _draw(
        self,
        model: LoadedModel,
        kind: str,
        request: ImageRequest,
        inputs: dict[str, Any],
        notes: list[str],
        on_progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
        flagged: list[bool],
    ) -> Image.Image:
        """One diffusion pass of an operation: one image from request.seed (`flagged` says
        whether the pipeline's safety checker withheld it: a tile of an upscale may be)."""
        pipe = self._image2image(model) if kind == "image2image" else self._inpainting(model)
        self._use_sampler(model, pipe, request.sampler)
        inputs = dict(inputs)
        if kind == "inpaint":
            inputs.update(width=request.width, height=request.height)
        generator = torch.Generator("cpu").manual_seed(request.seed or 0)
        image = draw(pipe, request, self.adapters, notes, **inputs,
                     **step_callback(on_progress, should_cancel), num_images_per_prompt=1,
                     generator=[generator])[0]
        flagged.append(is_pipeline_flagged(image))
        return image

    def _use_sampler(self, model: LoadedModel, pipe: Any, sampler: str) -> None:
        scheduler = model.schedulers.get(sampler)
        if pipe.scheduler is not scheduler:
            pipe.scheduler = scheduler


def _derived(auto_class: Any, model: LoadedModel, what: str) -> Any:
    """A pipeline of another kind that shares the loaded text-to-image pipeline's weights."""
    try:
        pipe = auto_class.from_pipe(model.text2image)
    except ValueError as exc:
        raise ModelError(_("model {model_label} has no {what} pipeline").format(
                             model_label=model.label, what=what)) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _source(name: str | None, load_image: Callable[[str], Image.Image] | None,
            mode: str) -> Image.Image:
    if name is None or load_image is None:
        raise ValueError(f"{mode} needs request.source_image and load_image")
    return load_image(name).convert("RGB")


def _control_nets(controlnets: Mapping[str, str | Mapping[str, str]] | None,
                  annotators: Mapping[str, str] | None, device: str,
                  dtype: torch.dtype) -> ControlNets | None:
    """IMAGINE_CONTROLNETS' models (each loaded on first use); None when none is set."""
    if not controlnets:
        return None
    from generator.control import ControlNets  # noqa: PLC0415 - cv2 only when configured

    return ControlNets(controlnets, annotators or {}, device, dtype)
