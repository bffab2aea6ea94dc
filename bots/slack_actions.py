"""What Reroll, Vary and Upscale ask for, built from the job the button belongs to."""

from __future__ import annotations

from bots.errors import PromptError
from generator.request import ImageRequest
from settings import Settings
from tasks.core.jobs import Job, JobStatus

# Low enough that a variation keeps the composition, high enough to look different.
VARY_STRENGTH = 0.35
# The high-resolution pass re-draws details of the 2x image without changing what it shows.
UPSCALE_STRENGTH = 0.3
UPSCALE_FACTOR = 2


def follow_up(parent: Job, action: str, index: int | None, settings: Settings) -> ImageRequest:
    """The request for a button of `parent`; PromptError with the reason when it cannot be."""
    request = parent.request
    if action == "reroll":
        return request.model_copy(update={"seed": None})
    if parent.status is not JobStatus.done or not parent.images:
        raise PromptError("That job has no images (it failed or was cancelled); try Reroll.")
    if index is None or not 0 <= index < len(parent.images):
        raise PromptError(f"That job has no image {0 if index is None else index + 1}.")
    source = parent.images[index]
    if action == "vary":
        return request.model_copy(update={
            "mode": "img2img", "source_image": source, "strength": VARY_STRENGTH,
            "seed": None, "num_images": 1})
    if action == "upscale":
        width, height = request.width * UPSCALE_FACTOR, request.height * UPSCALE_FACTOR
        if width * height > settings.max_pixels:
            raise PromptError(
                f"Image {index + 1} is {request.width}×{request.height}; upscaled 2× it would be "
                f"{width}×{height} = {width * height:,} pixels, more than this server allows "
                f"(IMAGINE_MAX_PIXELS={settings.max_pixels:,}). Ask the operator to raise it.")
        seed = parent.seeds[index] if index < len(parent.seeds) else request.seed
        return request.model_copy(update={
            "mode": "upscale", "source_image": source, "strength": UPSCALE_STRENGTH,
            "width": width, "height": height, "seed": seed, "num_images": 1})
    raise PromptError(f"Unknown action {action!r}.")
