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

from generator.errors import GenerationCancelled, GenerationError, ModelError
from generator.loading import load_pipeline, resolve_device, resolve_dtype
from generator.png import encode_png, parameters_text
from generator.request import SEED_MAX, UPSCALE_STRENGTH, ImageRequest
from generator.samplers import SchedulerCache, sampler_label
from settings.errors import ImagineError

if TYPE_CHECKING:
    from settings import Settings

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


class Engine:
    """Loads models lazily, once per process, and turns ImageRequests into PNGs."""

    def __init__(
        self,
        sources: Mapping[str, str],
        *,
        device: str = "auto",
        dtype: str = "auto",
        torch_threads: int | None = None,
    ) -> None:
        self.sources = dict(sources)
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
        )

    def pipeline(self, model_name: str = "default") -> Any:
        """The text-to-image pipeline of `model_name`, loaded on first use."""
        return self._model(model_name).text2image

    def warm_up(self, model_name: str = "default") -> None:
        """Load `model_name` now (at worker start) rather than on the first job."""
        self._model(model_name)

    def model_label(self, model_name: str = "default") -> str:
        return _label(self._source(model_name))

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
        stops the run with GenerationCancelled. `load_image(source_image)` supplies the
        starting image of img2img and upscale requests.
        """
        first_seed = request.seed
        if first_seed is None:
            raise ValueError("request.seed is None: pass request.seeded()")
        if should_cancel is not None and should_cancel():
            raise GenerationCancelled("cancelled before it started")
        model = self._model(request.model)
        with self._lock:
            pipe, request, inputs = self._prepare(model, request, load_image)
            scheduler = model.schedulers.get(request.sampler)
            if pipe.scheduler is not scheduler:
                pipe.scheduler = scheduler
            seeds = [(first_seed + i) % (SEED_MAX + 1) for i in range(request.num_images)]
            # CPU generators make the same seed give the same latents on every device.
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            if on_progress is not None or should_cancel is not None:
                inputs["callback_on_step_end"] = _StepCallback(on_progress, should_cancel)
            images = self._run(
                pipe,
                request,
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                num_images_per_prompt=request.num_images,
                generator=generators,
                **inputs,
            )
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
                    label=_label(source),
                    text2image=pipe,
                    schedulers=SchedulerCache(pipe.scheduler.config),
                )
            return self._models[model_name]

    def _image2image(self, model: _Model) -> Any:
        if model.image2image is None:
            from diffusers import AutoPipelineForImage2Image

            try:
                pipe = AutoPipelineForImage2Image.from_pipe(model.text2image)
            except ValueError as exc:
                raise ModelError(f"model {model.label} has no image-to-image pipeline") from exc
            pipe.set_progress_bar_config(disable=True)
            model.image2image = pipe
        return model.image2image

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
        if request.source_image is None or load_image is None:
            raise ValueError(f"{request.mode} needs request.source_image and load_image")
        source = load_image(request.source_image).convert("RGB")
        # The request's size is the target: for an upscale the front end already asked for
        # factor × the source (ImageRequest.upscaled), so the result is really larger.
        width, height = _multiple_of_8(request.width), _multiple_of_8(request.height)
        strength = request.strength
        if request.mode == "upscale":
            strength = min(strength, UPSCALE_STRENGTH)
        if source.size != (width, height):
            source = source.resize((width, height), Image.Resampling.LANCZOS)
        # img2img runs int(steps × strength) steps; diffusers refuses zero.
        steps = max(request.num_inference_steps, math.ceil(1 / strength))
        request = request.model_copy(
            update={"width": width, "height": height, "strength": strength, "num_inference_steps": steps}
        )
        return self._image2image(model), request, {"image": source, "strength": strength}

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


def _out_of_memory(request: ImageRequest) -> GenerationError:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return GenerationError(
        f"out of GPU memory drawing {request.num_images} × {request.width}x{request.height}: "
        "ask for a smaller size or fewer images (--n), or set IMAGINE_DTYPE=float16"
    )


def _multiple_of_8(value: float) -> int:
    # The VAE works in steps of 8 pixels; round down so the result stays within limits.
    return max(8, int(value) // 8 * 8)


def _label(source: str) -> str:
    """The name A1111-style metadata gives the model: a file's stem or a repo's name."""
    name = source.rstrip("/\\")
    return Path(name).stem if Path(name).suffix in (".safetensors", ".ckpt") else Path(name).name


def _short(exc: BaseException, limit: int = 300) -> str:
    lines = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"
