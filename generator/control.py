"""ControlNet: the models (IMAGINE_CONTROLNETS), the control maps and the controlled pipelines.

A ControlNet steers a diffusion pass with a map drawn from the user's control image: edges
(canny, computed here with OpenCV), depth (from an annotator model when IMAGINE_ANNOTATORS
names one), or any other kind taken as the ready map (a pose skeleton, a scribble, …).

Imported by the GPU worker only: torch at module level; diffusers, OpenCV and transformers
(annotators) on first use, so a worker without IMAGINE_CONTROLNETS never loads them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps

from generator.annotators import Annotators
from generator.errors import ModelError, first_line
from generator.loading import dtype_argument
from generator.request import CONTROL_KINDS
from settings.catalogue import FAMILIES
from settings.errors import ConfigError
from settings.i18n import N_, _

# The thresholds of diffusers' and A1111's canny examples: strong edges, little texture.
CANNY_LOW, CANNY_HIGH = 100, 200

# Known ControlNets, quoted in the message that says how to configure a missing one.
_EXAMPLES: dict[str, dict[str, str]] = {
    "sd15": {
        "canny": "lllyasviel/control_v11p_sd15_canny",
        "depth": "lllyasviel/control_v11f1p_sd15_depth",
        "pose": "lllyasviel/control_v11p_sd15_openpose",
        "scribble": "lllyasviel/control_v11p_sd15_scribble",
        "lineart": "lllyasviel/control_v11p_sd15_lineart",
        "tile": "lllyasviel/control_v11f1e_sd15_tile",
    },
    "sdxl": {
        "canny": "diffusers/controlnet-canny-sdxl-1.0",
        "depth": "diffusers/controlnet-depth-sdxl-1.0",
        "pose": "xinsir/controlnet-openpose-sdxl-1.0",
        "scribble": "xinsir/controlnet-scribble-sdxl-1.0",
        "tile": "xinsir/controlnet-tile-sdxl-1.0",
    },
}
_OFFLINE_HINT = N_("download it on a machine with internet and point IMAGINE_CONTROLNETS at "
                   "the folder")


class ControlNets:
    """The configured ControlNets and annotators of one worker, each loaded once on first use.

    `sources`: kind → source for every family, or kind → {family → source}; a source is a hub
    id (`owner/name`) or a diffusers folder (config.json and weights). `annotators`: kind →
    transformers model turning a photo into that kind's map (depth only).
    """

    def __init__(
        self,
        sources: Mapping[str, str | Mapping[str, str]],
        annotators: Mapping[str, str],
        device: str,
        dtype: torch.dtype,
    ) -> None:
        self._sources = {kind: _checked_source(kind, source) for kind, source in sources.items()}
        self._annotators = Annotators(annotators, device)
        self.device = device
        self.dtype = dtype
        self._models: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def kinds(self) -> tuple[str, ...]:
        """The kinds with a ControlNet for at least one family, in CONTROL_KINDS' order."""
        return tuple(kind for kind in CONTROL_KINDS if kind in self._sources)

    def source(self, kind: str, family: str) -> str:
        """Where the ControlNet for `kind` on `family` models comes from; ModelError if none."""
        configured = self._sources.get(kind)
        if isinstance(configured, str):
            return configured
        if configured is not None and family in configured:
            return configured[family]
        example = _EXAMPLES.get(family, {}).get(kind, "HUB_ID_OR_FOLDER")
        others = _(" (it is set for {families} only)").format(
            families=", ".join(sorted(configured))) if configured else ""
        raise ModelError(
            _("no ControlNet for {kind} on {family} models{others}: set "
              "IMAGINE_CONTROLNETS='{{\"{kind}\": {{\"{family}\": \"{example}\"}}}}' (a hub id "
              "or a diffusers folder), or use another model").format(
                kind=kind, family=family, others=others, example=example)
        )

    def model(self, kind: str, family: str) -> Any:
        """The ControlNet model for `kind` on `family` models, on the engine's device and dtype."""
        source = self.source(kind, family)
        key = (source, family)
        with self._lock:
            if key not in self._models:
                self._models[key] = _load_controlnet(source, kind, family, self.device, self.dtype)
            return self._models[key]

    def control_map(self, kind: str, image: Image.Image, width: int, height: int) -> Image.Image:
        """The map the ControlNet of `kind` reads, made from the user's image, width×height.

        The image is cropped to the target's shape before resizing (A1111's "crop and
        resize"), so a photo of another aspect ratio is not squashed.
        """
        fitted = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
        if kind == "canny":
            return canny_map(fitted)
        if self._annotators.has(kind):
            return self._annotators.annotate(kind, fitted).resize((width, height))
        return fitted


def canny_map(image: Image.Image) -> Image.Image:
    """OpenCV's Canny edges of `image` as white lines on black, in three channels."""
    import cv2
    import numpy as np

    gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, CANNY_LOW, CANNY_HIGH)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def controlled(pipe: Any, controlnet: Any) -> Any:
    """The ControlNet variant of `pipe`, sharing its weights and scheduler.

    A text-to-image pipeline becomes e.g. StableDiffusion(XL)ControlNetPipeline, an
    image-to-image one …ControlNetImg2ImgPipeline, an inpainting one
    …ControlNetInpaintPipeline. Building it copies no weights (under 1 ms on the tiny
    model), so it is built per job rather than cached: a cache would keep evicted models
    alive and could hand out a pipeline holding an old scheduler.
    """
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

    _check_fits(pipe, controlnet)
    name = type(pipe).__name__
    auto: Any
    if "Inpaint" in name:
        auto, what = AutoPipelineForInpainting, "inpainting"
    elif "Img2Img" in name:
        auto, what = AutoPipelineForImage2Image, "image-to-image"
    else:
        auto, what = AutoPipelineForText2Image, "text-to-image"
    try:
        # The auto classes keep each component's dtype; the pipeline classes' own from_pipe
        # would cast the shared (float16) weights to float32 in place.
        derived = auto.from_pipe(pipe, controlnet=controlnet)
    except ValueError as exc:
        raise ModelError(_("{name} has no ControlNet variant for {what}: use --cn with another "
                           "model").format(name=name, what=what)) from exc
    derived.set_progress_bar_config(disable=True)
    return derived


def control_inputs(pipe: Any, control_map: Image.Image, weight: float) -> dict[str, Any]:
    """The call arguments that hand `control_map` to the controlled `pipe` at `weight`.

    Pipelines whose `image` is the picture to change (img2img, inpainting) and Flux take the
    map as `control_image`; SD text-to-image ControlNet pipelines take it as `image`.
    """
    import inspect

    parameters = inspect.signature(type(pipe).__call__).parameters
    name = "control_image" if "control_image" in parameters else "image"
    return {name: control_map, "controlnet_conditioning_scale": weight}


def family_of(pipe: Any) -> str:
    """The base-model family of a pipeline: "sd15", "sd21", "sdxl", "sd3" or "flux".

    By the class name first; a pipeline of another name is judged by its components (a
    second text encoder beside a UNet: SDXL), and a Stable Diffusion 1/2 one by its text
    encoder's width (OpenCLIP ViT-H, 1024, is SD 2.x's; CLIP ViT-L, 768, SD 1.x's).
    """
    name = type(pipe).__name__
    components = getattr(pipe, "components", {}) or {}
    if name.startswith("Flux"):
        return "flux"
    if name.startswith("StableDiffusion3") or "text_encoder_3" in components:
        return "sd3"
    if name.startswith("StableDiffusionXL") or (
        components.get("text_encoder_2") is not None and components.get("unet") is not None
    ):
        return "sdxl"
    encoder = components.get("text_encoder")
    width = getattr(getattr(encoder, "config", None), "hidden_size", None)
    return "sd21" if width == 1024 else "sd15"


# --- checks and loading --------------------------------------------------------------------


def _checked_source(kind: str, source: str | Mapping[str, str]) -> str | dict[str, str]:
    if kind not in CONTROL_KINDS:
        raise ConfigError(
            f"IMAGINE_CONTROLNETS names an unknown kind {kind!r}: use {', '.join(CONTROL_KINDS)}"
        )
    if isinstance(source, str):
        return source
    unknown = sorted(set(source) - set(FAMILIES))
    if unknown:
        raise ConfigError(
            f"IMAGINE_CONTROLNETS[{kind!r}] names unknown model families {', '.join(unknown)}: "
            f"use {', '.join(FAMILIES)}"
        )
    return dict(source)


def _model_class(family: str) -> Any:
    import diffusers

    if family == "sd3":
        return diffusers.SD3ControlNetModel
    if family == "flux":
        return diffusers.FluxControlNetModel
    return diffusers.ControlNetModel


def _load_controlnet(source: str, kind: str, family: str, device: str, dtype: torch.dtype) -> Any:
    """ControlNetModel.from_pretrained with every failure a ModelError saying what to do."""
    what = f"the {kind} ControlNet {source!r}"
    path = Path(source).expanduser()
    if path.suffix.lower() in (".safetensors", ".ckpt", ".pth", ".bin"):
        raise ModelError(
            _("{what} is a single file: use a diffusers folder (config.json and weights, as on "
              "the Hugging Face Hub) or a hub id in IMAGINE_CONTROLNETS").format(what=what)
        )
    looks_local = source.startswith((".", "/", "~")) or source.count("/") != 1
    if looks_local and not path.is_dir():
        raise ModelError(_("{what} is not a folder: fix IMAGINE_CONTROLNETS (a hub id or a "
                           "diffusers folder)").format(what=what))
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelError(
            _("{what} is a folder without config.json: point IMAGINE_CONTROLNETS at a "
              "diffusers ControlNet").format(what=what)
        )
    try:
        name = str(path) if path.is_dir() else source
        model = _model_class(family).from_pretrained(name, **dtype_argument(dtype))
        return model.to(device).eval()
    except OSError as exc:
        # Offline, unreachable, unknown repo and missing weights all arrive as OSError.
        raise ModelError(
            _("could not load {what} ({reason}): it is not in the local Hugging Face cache and "
              "the Hub is unreachable or has no such model; {hint}").format(
                what=what, reason=first_line(exc).rstrip('.'), hint=_(_OFFLINE_HINT))
        ) from exc
    except Exception as exc:
        raise ModelError(_("could not load {what}: {first_line}").format(
                             what=what, first_line=first_line(exc))) from exc



def _check_fits(pipe: Any, controlnet: Any) -> None:
    """A ControlNet made for another base model fails deep in the UNet; say so up front."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if denoiser is None:
        return
    for field in ("cross_attention_dim", "block_out_channels", "joint_attention_dim"):
        ours = getattr(denoiser.config, field, None)
        theirs = getattr(controlnet.config, field, None)
        if ours is not None and theirs is not None and _same(ours) != _same(theirs):
            raise ModelError(
                _("the ControlNet {label} does not fit this model ({field} {same} against "
                  "{same2}: it was made for another base model); set IMAGINE_CONTROLNETS per "
                  "family, or the model's family in IMAGINE_MODELS").format(
                    label=_label(controlnet), field=field, same=_same(theirs), same2=_same(ours))
            )


def _same(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _label(controlnet: Any) -> str:
    name = getattr(controlnet.config, "_name_or_path", None) or ""
    return repr(Path(name).name or name) if name else type(controlnet).__name__
