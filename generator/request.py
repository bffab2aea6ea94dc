"""The parameters of one generation, in diffusers' own names.

Every front end produces an `ImageRequest` (through the prompt grammar in bots/), the queue
stores it inside a Job, and the generator consumes it. It is plain, validated data.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SEED_MAX = 2**32 - 1
# An upscale redraws the details of the enlarged image without changing what it shows.
UPSCALE_STRENGTH = 0.3

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

Mode = Literal["txt2img", "img2img", "upscale"]

# The fields of the first release. They always take part in a request's identity (seed,
# signature, cache key), defaults included, exactly as they did then; fields added since
# take part only when set. Never add to this tuple.
ORIGINAL_FIELDS: tuple[str, ...] = (
    "prompt", "negative_prompt", "width", "height", "seed", "num_inference_steps",
    "guidance_scale", "num_images", "model", "sampler", "mode", "source_image", "strength",
)


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
    # img2img ("vary") and upscale start from an image already in storage.
    mode: Mode = "txt2img"
    source_image: str | None = None
    strength: float = Field(default=0.75, gt=0.0, le=1.0)

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
                             seed=None)

    def upscaled(self, source_image: str, seed: int | None, factor: int) -> ImageRequest:
        """A stored image of this request redrawn at `factor` × its size, with the seed it was
        drawn with: one image, the size of the result (the generator's target)."""
        return self._replace(mode="upscale", source_image=source_image,
                             width=self.width * factor, height=self.height * factor,
                             seed=seed, num_images=1, strength=UPSCALE_STRENGTH)

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
