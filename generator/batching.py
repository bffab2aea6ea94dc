"""Which jobs may share one pipeline call, and what each member of a shared call brings.

Two requests are compatible when everything the pipeline call takes for the whole batch is
the same: model, LoRA set (names and weights), size, steps, sampler, cfg and operation (for
an image prompt, its strength too). Prompts, negative prompts, seeds and the number of
images stay per job. Image operations (upscale, zoom, pan, inpaint) and ControlNet jobs
are drawn alone. This module imports no torch: the scheduler asks it on every claim.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from generator.request import ImageRequest

if TYPE_CHECKING:
    from PIL.Image import Image

    from generator.engine import GeneratedImage

# Modes whose call is the same for every member but the prompt and the seed.
BATCHABLE_MODES = frozenset({"txt2img", "img2img"})


def batch_key(request: ImageRequest) -> str | None:
    """A string equal for requests that can be drawn in one call; None: always alone."""
    if request.mode not in BATCHABLE_MODES or request.control is not None:
        return None
    shared = {
        "model": request.model,
        "loras": [[lora.name, lora.weight] for lora in request.loras],
        "size": [request.width, request.height],
        "steps": request.num_inference_steps,
        "sampler": request.sampler,
        "cfg": request.guidance_scale,
        "mode": request.mode,
        "strength": request.strength if request.mode == "img2img" else None,
    }
    return json.dumps(shared, separators=(",", ":"))


ProgressCallback = Callable[[int, int, "Image | None"], None]


@dataclass(frozen=True)
class BatchMember:
    """One job of a batch: its request (seeded) and its own callbacks, as Engine.generate
    takes them."""

    request: ImageRequest
    on_progress: ProgressCallback | None = None
    should_cancel: Callable[[], bool] | None = None
    on_status: Callable[[str], None] | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """What one member got: its images, or the exception that ended it (GenerationCancelled
    for a member cancelled while the others went on)."""

    images: list[GeneratedImage] | None = None
    error: BaseException | None = None
