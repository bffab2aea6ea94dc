"""The generator's one entry point for the worker: requests in, PNG bytes out.

An `Engine` lives as long as its worker process. It loads each model the first time it is
asked for (or at `warm_up`), keeps it, and runs every request on it with the same pipeline
objects and cached schedulers, so a call costs what the bare diffusers call costs plus the
PNG encoding.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from generator import operations
from generator.errors import GenerationCancelled, GenerationError, ModelError
from generator.geometry import floor8
from generator.loading import load_pipeline, resolve_device, resolve_dtype
from generator.png import encode_png, model_label, parameters_text
from generator.request import SEED_MAX, ImageRequest
from generator.samplers import SchedulerCache, sampler_label
from settings.errors import ImagineError

if TYPE_CHECKING:
    from generator.upscaler import Upscaler
    from settings import Settings

# IMAGINE_MAX_PIXELS' default: the most one diffusion pass draws at once.
DEFAULT_MAX_PIXELS = 1024 * 1024

ProgressCallback = Callable[[int, int, "Image.Image | None"], None]


@dataclass(frozen=True)
class GeneratedImage:
    png: bytes
    seed: int
    width: int
    height: int
    parameters: str
    # What the user should be told about this result: a capped size, a fallback used.
    notes: tuple[str, ...] = ()


@dataclass
class _Model:
    """One loaded model: its pipelines (sharing weights) and its schedulers."""

    label: str
    text2image: Any
    schedulers: SchedulerCache
    image2image: Any = field(default=None)
    inpaint: Any = field(default=None)


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
    ) -> None:
        self.sources = dict(sources)
        # IMAGINE_UPSCALER: a super-resolution model file, loaded on first use or warm_up.
        self.upscaler_path = Path(upscaler) if upscaler else None
        self._upscaler: Upscaler | None = None
        # Detail passes of big upscales run in tiles of at most this many pixels.
        self.max_pixels = max_pixels
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self._dtype_setting = dtype
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self._models: dict[str, _Model] = {}
        # Pipelines and schedulers hold per-call state: one generation at a time.
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        return cls(
            settings.model_sources,
            device=settings.device,
            dtype=settings.dtype,
            torch_threads=settings.torch_threads,
            upscaler=settings.upscaler,
            max_pixels=settings.max_pixels,
        )

    def pipeline(self, model_name: str = "default") -> Any:
        """The text-to-image pipeline of `model_name`, loaded on first use."""
        return self._model(model_name).text2image

    def warm_up(self, model_name: str = "default") -> None:
        """Load `model_name` (and IMAGINE_UPSCALER) now, at worker start, rather than on
        the first job."""
        self._model(model_name)
        self.upscaler()

    def upscaler(self) -> Upscaler | None:
        """The super-resolution model of IMAGINE_UPSCALER, loaded once; None when unset."""
        if self.upscaler_path is None:
            return None
        with self._lock:
            if self._upscaler is None:
                from generator.upscaler import Upscaler  # noqa: PLC0415 - spandrel is slow

                self._upscaler = Upscaler(self.upscaler_path, self.device, self.dtype)
            return self._upscaler

    def model_label(self, model_name: str = "default") -> str:
        return model_label(self._source(model_name))

    def generate(
        self,
        request: ImageRequest,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        load_image: Callable[[str], Image.Image] | None = None,
    ) -> list[GeneratedImage]:
        """Draw `request.num_images` images; image i uses seed `request.seed + i`.

        `on_progress(step, total, preview)` runs after each denoising step (preview is
        always None for now); `should_cancel()` is asked at the same points and, when true,
        stops the run with GenerationCancelled (an upscale also reports and checks per
        super-resolution tile). `load_image(name)` supplies the source image (and an
        inpaint's mask) of every mode but txt2img; operations (generator.operations) keep
        the request's seed and return their notes with the image.
        """
        first_seed = request.seed
        if first_seed is None:
            raise ValueError("request.seed is None: pass request.seeded()")
        if should_cancel is not None and should_cancel():
            raise GenerationCancelled("cancelled before it started")
        model = self._model(request.model)
        seeds = [(first_seed + i) % (SEED_MAX + 1) for i in range(request.num_images)]
        if request.mode in operations.OPERATION_MODES:
            return [self._operate(model, request.with_seed(seed), on_progress, should_cancel,
                                  load_image) for seed in seeds]
        with self._lock:
            pipe, request, inputs = self._prepare(model, request, load_image)
            self._use_sampler(model, pipe, request.sampler)
            # CPU generators make the same seed give the same latents on every device.
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            if on_progress is not None or should_cancel is not None:
                inputs["callback_on_step_end"] = _StepCallback(on_progress, should_cancel)
            images = self._run(pipe, request, **_common(request),
                               num_images_per_prompt=request.num_images, generator=generators,
                               **inputs)
        label = sampler_label(request.sampler)
        results = []
        for image, seed in zip(images, seeds, strict=True):
            text = parameters_text(request, seed, model.label, sampler_label=label)
            results.append(GeneratedImage(encode_png(image, text), seed, image.width, image.height, text))
        return results

    # --- loading -------------------------------------------------------------------------

    def _source(self, model_name: str) -> str:
        try:
            return self.sources[model_name]
        except KeyError:
            known = ", ".join(sorted(self.sources)) or "none"
            raise ModelError(f"unknown model {model_name!r}: this worker has {known}") from None

    def _model(self, model_name: str) -> _Model:
        model = self._models.get(model_name)
        if model is not None:
            return model
        with self._lock:
            if model_name not in self._models:
                source = self._source(model_name)
                pipe = load_pipeline(source, self.device, self._dtype_setting)
                self._models[model_name] = _Model(
                    label=model_label(source),
                    text2image=pipe,
                    schedulers=SchedulerCache(pipe.scheduler.config),
                )
            return self._models[model_name]

    def _image2image(self, model: _Model) -> Any:
        if model.image2image is None:
            from diffusers import AutoPipelineForImage2Image

            model.image2image = _derived(AutoPipelineForImage2Image, model, "image-to-image")
        return model.image2image

    def _inpainting(self, model: _Model) -> Any:
        # A 4-channel (non-inpainting) UNet works too: diffusers then blends the known
        # latents back at every step.
        if model.inpaint is None:
            from diffusers import AutoPipelineForInpainting

            model.inpaint = _derived(AutoPipelineForInpainting, model, "inpainting")
        return model.inpaint

    # --- one generation ------------------------------------------------------------------

    def _prepare(
        self,
        model: _Model,
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
        model: _Model,
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
        with self._lock:
            context = operations.Context(
                draw=lambda kind, ran, inputs, progress: self._draw(
                    model, kind, ran, inputs, progress, should_cancel),
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
        return GeneratedImage(encode_png(image, text), seed, image.width, image.height, text,
                              outcome.notes)

    def _draw(
        self,
        model: _Model,
        kind: str,
        request: ImageRequest,
        inputs: dict[str, Any],
        on_progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
    ) -> Image.Image:
        """One diffusion pass of an operation: one image from request.seed."""
        pipe = self._image2image(model) if kind == "image2image" else self._inpainting(model)
        self._use_sampler(model, pipe, request.sampler)
        inputs = dict(inputs)
        if kind == "inpaint":
            inputs.update(width=request.width, height=request.height)
        if on_progress is not None or should_cancel is not None:
            inputs["callback_on_step_end"] = _StepCallback(on_progress, should_cancel)
        generator = torch.Generator("cpu").manual_seed(request.seed or 0)
        return self._run(pipe, request, **_common(request), num_images_per_prompt=1,
                         generator=[generator], **inputs)[0]

    def _use_sampler(self, model: _Model, pipe: Any, sampler: str) -> None:
        scheduler = model.schedulers.get(sampler)
        if pipe.scheduler is not scheduler:
            pipe.scheduler = scheduler

    def _run(self, pipe: Any, request: ImageRequest, **kwargs: Any) -> list[Image.Image]:
        try:
            return pipe(**kwargs).images
        except _CallbackError as exc:
            raise exc.original from None
        except ImagineError:
            raise
        except torch.cuda.OutOfMemoryError as exc:
            raise _out_of_memory(request) from exc
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise _out_of_memory(request) from exc
            raise GenerationError(f"generation failed: {_short(exc)}") from exc
        except Exception as exc:
            raise GenerationError(f"generation failed: {_short(exc)}") from exc


class _CallbackError(Exception):
    """Carries an exception out of a caller's callback past the generic error wrapping."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _StepCallback:
    """diffusers' callback_on_step_end: report progress and honour cancellation.

    Cancelling raises out of the denoising loop instead of setting `pipe._interrupt`:
    with the flag, diffusers runs out the loop and still decodes the latents, which on a
    large image costs seconds of GPU time for a result nobody wants.
    """

    def __init__(
        self, on_progress: ProgressCallback | None, should_cancel: Callable[[], bool] | None
    ) -> None:
        self.on_progress = on_progress
        self.should_cancel = should_cancel

    def __call__(
        self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        total = getattr(pipe, "num_timesteps", None) or step + 1
        try:
            if self.on_progress is not None:
                self.on_progress(step + 1, total, None)
            cancelled = self.should_cancel is not None and self.should_cancel()
        except Exception as exc:
            raise _CallbackError(exc) from exc
        if cancelled:
            raise GenerationCancelled(f"cancelled after step {step + 1} of {total}")
        return callback_kwargs


def _derived(auto_class: Any, model: _Model, what: str) -> Any:
    """A pipeline of another kind that shares the loaded text-to-image pipeline's weights."""
    try:
        pipe = auto_class.from_pipe(model.text2image)
    except ValueError as exc:
        raise ModelError(f"model {model.label} has no {what} pipeline") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _source(name: str | None, load_image: Callable[[str], Image.Image] | None,
            mode: str) -> Image.Image:
    if name is None or load_image is None:
        raise ValueError(f"{mode} needs request.source_image and load_image")
    return load_image(name).convert("RGB")


def _common(request: ImageRequest) -> dict[str, Any]:
    """The pipeline arguments every kind of pass takes from the request."""
    return dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
    )


def _out_of_memory(request: ImageRequest) -> GenerationError:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return GenerationError(
        f"out of GPU memory drawing {request.num_images} × {request.width}x{request.height}: "
        "ask for a smaller size or fewer images (--n), or set IMAGINE_DTYPE=float16"
    )


def _short(exc: BaseException, limit: int = 300) -> str:
    lines = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"
