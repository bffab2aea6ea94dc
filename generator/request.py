"""The parameters of one generation, in diffusers' own names.

Every front end produces an `ImageRequest` (through the prompt grammar in bots/), the queue
stores it inside a Job, and the generator consumes it. It is plain, validated data.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generator.geometry import Direction

SEED_MAX = 2**32 - 1
# Upscale (Creative) redraws the details of the enlarged image without changing what it shows.
UPSCALE_STRENGTH = 0.3
# Without a super-resolution model, Upscale (Subtle) sharpens the Lanczos enlargement with a
# lighter pass: enough to restore edges, too little to change anything the user would notice.
DETAIL_STRENGTH = 0.2
# An image prompt without --strength: the source's layout and colours survive, details change.
IMAGE_PROMPT_STRENGTH = 0.6

# Sampler names users type, mapped to how A1111-compatible tools spell them in PNG metadata.
SAMPLER_LABELS: dict[str, str] = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "heun": "Heun",
    "dpm++2m": "DPM++ 2M",
    "dpm++2m_karras": "DPM++ 2M Karras",
    "dpm++sde": "DPM++ SDE",
    "ddim": "DDIM",
    "pndm": "PNDM",
    "lms": "LMS",
    "unipc": "UniPC",
    "lcm": "LCM",
}
SAMPLERS: tuple[str, ...] = tuple(SAMPLER_LABELS)

# txt2img draws from text alone; every other mode starts from `source_image` (a storage name,
# which is the hash of the source's PNG bytes):
# - img2img: an image prompt or a variation, redrawn at `strength`;
# - upscale: a super-resolution model (or Lanczos plus a light detail pass) to width×height;
# - upscale_creative: the same, then an img2img pass at `strength` for new detail;
# - zoom_out / pan: outpainting on a canvas grown by `factor` / towards `direction`;
# - inpaint: the parts of the source that `mask_image` paints white are redrawn.
Mode = Literal["txt2img", "img2img", "upscale", "upscale_creative", "zoom_out", "pan", "inpaint"]
SOURCE_MODES: tuple[str, ...] = ("img2img", "upscale", "upscale_creative", "zoom_out", "pan",
                                 "inpaint")

# The fields of the first release. They always take part in a request's identity (seed,
# signature, cache key), defaults included, exactly as they did then; fields added since
# take part only when set. Never add to this tuple.
ORIGINAL_FIELDS: tuple[str, ...] = (
    "prompt", "negative_prompt", "width", "height", "seed", "num_inference_steps",
    "guidance_scale", "num_images", "model", "sampler", "mode", "source_image", "strength",
)


# LoRA weights users may give (A1111's range): below 0 pushes away from the LoRA's concept.
LORA_WEIGHT_MIN, LORA_WEIGHT_MAX = -2.0, 2.0
# LoRAs one job may stack; beyond a handful images fall apart and a worker's adapters churn.
MAX_LORAS = 8
# ControlNet kinds: canny is computed from the control image, the others take it as the
# ready map unless an annotator is configured (generator/control.py).
CONTROL_KINDS: tuple[str, ...] = ("canny", "depth", "pose", "scribble", "lineart", "tile")
CONTROL_WEIGHT_MAX = 2.0


class LoraUse(BaseModel):
    """One LoRA of a request: a file name from IMAGINE_LORA_DIR (without .safetensors) and
    its weight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    weight: float = Field(default=1.0, ge=LORA_WEIGHT_MIN, le=LORA_WEIGHT_MAX)


class ImageRequest(BaseModel):
    """What to draw: prompt, size, sampling parameters, and for variations a source image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    width: int = Field(default=512, ge=8)
    height: int = Field(default=512, ge=8)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    num_inference_steps: int = Field(default=25, ge=1)
    guidance_scale: float = Field(default=7.0, ge=0.0)
    num_images: int = Field(default=1, ge=1)
    model: str = "default"
    sampler: str = "euler"
    # Every mode but txt2img starts from an image already in storage.
    mode: Mode = "txt2img"
    source_image: str | None = None
    strength: float = Field(default=0.75, gt=0.0, le=1.0)
    # Later fields: part of a request's identity only when set (see canonical_fields).
    mask_image: str | None = None  # inpaint: white (luminance >= 128) is redrawn
    factor: float | None = Field(default=None, gt=1.0, le=4.0)  # zoom_out 1.5|2; upscale
    direction: Direction | None = None  # pan
    # LoRAs applied for this job only, in the order given (names unique).
    loras: tuple[LoraUse, ...] = Field(default=(), max_length=MAX_LORAS)
    # ControlNet: its kind (CONTROL_KINDS), the control image (a storage name: the user's
    # image as given; canny edges are computed by the worker) and its conditioning scale.
    control: str | None = None
    control_image: str | None = None
    control_weight: float = Field(default=1.0, ge=0.0, le=CONTROL_WEIGHT_MAX)
    # Language (#16): --raw draws the prompt as written (no translation into English);
    # --enhance has a small LLM expand the prompt first (seeded by the job's seed).
    raw: bool = False
    enhance: bool = False

    @model_validator(mode="after")
    def _mode_has_its_inputs(self) -> ImageRequest:
        if self.mode != "txt2img" and self.source_image is None:
            raise ValueError(f"mode {self.mode} needs source_image")
        if self.mode == "inpaint" and self.mask_image is None:
            raise ValueError("mode inpaint needs mask_image")
        if self.mode == "zoom_out" and self.factor is None:
            raise ValueError("mode zoom_out needs factor")
        if self.mode == "pan" and self.direction is None:
            raise ValueError("mode pan needs direction")
        if (self.control is None) != (self.control_image is None):
            raise ValueError("control and control_image go together")
        if self.control is not None and self.control not in CONTROL_KINDS:
            raise ValueError(f"control must be one of {', '.join(CONTROL_KINDS)}")
        if self.control is not None and self.mode not in ("txt2img", "img2img"):
            raise ValueError(f"mode {self.mode} takes no control image")
        names = [lora.name for lora in self.loras]
        if len(set(names)) != len(names):
            raise ValueError("each LoRA may be given once")
        return self

    def canonical_fields(self, *, exclude: frozenset[str] = frozenset()) -> set[str]:
        """The fields that identify this request: every original field, and a later one
        only when it is set.

        Seeds, signatures and cache keys of published prompt URLs are computed from these,
        so a field added in a later release, left at its default, changes none of them.
        """
        later = {name for name, info in type(self).model_fields.items()
                 if name not in ORIGINAL_FIELDS and getattr(self, name) != info.get_default(
                     call_default_factory=True)}
        return (set(ORIGINAL_FIELDS) | later) - exclude

    def canonical_json(self, *, exclude: frozenset[str] = frozenset()) -> str:
        """The canonical fields as compact JSON in declaration order."""
        return self.model_dump_json(include=self.canonical_fields(exclude=exclude))

    def canonical_dict(self, *, exclude: frozenset[str] = frozenset()) -> dict[str, object]:
        """The canonical fields as JSON-ready values."""
        return self.model_dump(mode="json", include=self.canonical_fields(exclude=exclude))

    def varied(self, source_image: str, strength: float) -> ImageRequest:
        """A variation of a stored image: img2img at `strength`, the same prompt, size and
        count, a new seed."""
        return self._replace(mode="img2img", source_image=source_image, strength=strength,
                             seed=None, mask_image=None, factor=None, direction=None)

    def from_image(self, source_image: str, width: int, height: int,
                   strength: float | None = None) -> ImageRequest:
        """This prompt drawn from a user's image (already fitted to width×height)."""
        return self._replace(mode="img2img", source_image=source_image, width=width,
                             height=height, strength=strength or IMAGE_PROMPT_STRENGTH)

    def upscaled(self, source_image: str, seed: int | None, width: int, height: int,
                 factor: float, *, creative: bool = False) -> ImageRequest:
        """A stored image of this request enlarged `factor` times, to width×height (less
        than factor × its size where a pixel limit caps it), with its own seed: one image."""
        return self._operation("upscale_creative" if creative else "upscale", source_image,
                               seed, width, height, factor=factor,
                               strength=UPSCALE_STRENGTH if creative else DETAIL_STRENGTH)

    def zoomed_out(self, source_image: str, seed: int | None, width: int, height: int,
                   factor: float) -> ImageRequest:
        """A stored image on a canvas `factor` × larger, the new area drawn (outpainting)."""
        return self._operation("zoom_out", source_image, seed, width, height, factor=factor,
                               strength=1.0)

    def panned(self, source_image: str, seed: int | None, width: int, height: int,
               direction: Direction) -> ImageRequest:
        """A stored image extended by half its side towards `direction` (outpainting)."""
        return self._operation("pan", source_image, seed, width, height, direction=direction,
                               strength=1.0)

    def inpainted(self, source_image: str, mask_image: str, seed: int | None, width: int,
                  height: int, prompt: str | None = None) -> ImageRequest:
        """A stored image with the region `mask_image` paints white redrawn (Vary Region)."""
        return self._operation("inpaint", source_image, seed, width, height,
                               mask_image=mask_image, strength=1.0,
                               prompt=prompt or self.prompt)

    def _operation(self, mode: Mode, source_image: str, seed: int | None, width: int,
                   height: int, **changes: object) -> ImageRequest:
        # Operations keep the LoRAs (a zoom out of a LoRA's style stays in that style) but
        # not the ControlNet: its map has the source's size and layout, not the new canvas's.
        cleared: dict[str, object] = {"mask_image": None, "factor": None, "direction": None,
                                      "control": None, "control_image": None,
                                      "control_weight": 1.0}
        return self._replace(**{**cleared, "mode": mode, "source_image": source_image,
                                "seed": seed, "width": width, "height": height,
                                "num_images": 1, **changes})

    def _replace(self, **changes: object) -> ImageRequest:
        """A validated copy with `changes` (model_copy would skip validation)."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def with_seed(self, seed: int) -> ImageRequest:
        return self.model_copy(update={"seed": seed % (SEED_MAX + 1)})

    def seeded(self) -> ImageRequest:
        """This request with a seed: the given one, or one derived from its parameters."""
        if self.seed is not None:
            return self
        return self.with_seed(derived_seed(self))


def derived_seed(request: ImageRequest) -> int:
    """A seed that depends only on the request, so the same prompt URL gives the same image."""
    key = request.canonical_json(exclude=frozenset({"seed"})).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")
