"""What Reroll, Vary and Upscale mean, once for every front end.

`follow_up(parent, index, action, limits)` turns a button press (Slack, Discord) or a REST
call (`POST /api/v1/jobs/<id>/actions`) into the new job's ImageRequest, or raises a
PromptError whose message tells the user what to do instead. Pure: no I/O, no platform.
"""

from __future__ import annotations

from dataclasses import dataclass

from bots.errors import PromptError
from generator.request import ImageRequest
from settings import Settings
from tasks.core.jobs import Job, JobStatus

REROLL, VARY_SUBTLE, VARY_STRONG, UPSCALE = "reroll", "vary_subtle", "vary_strong", "upscale"
ACTIONS = (REROLL, VARY_SUBTLE, VARY_STRONG, UPSCALE)
# Names on buttons posted by earlier releases (custom ids `imagine:vary:…`): they keep working.
LEGACY_ACTIONS = {"vary": VARY_SUBTLE, "upscale": UPSCALE}

# img2img strength: the share of the denoising schedule redrawn from the image. At 0.35 the
# composition, colours and pose stay and details change (Midjourney's "Vary (Subtle)"); at
# 0.75, diffusers' img2img default, only the layout survives ("Vary (Strong)").
VARY_STRENGTHS = {VARY_SUBTLE: 0.35, VARY_STRONG: 0.75}


class JobNotReady(PromptError):
    """The parent job is still queued or drawing (the REST API answers 409)."""


class NoImages(PromptError):
    """The parent job finished without images: it failed or was cancelled (409)."""


@dataclass(frozen=True)
class FollowUpLimits:
    """What the settings decide about follow-ups."""

    max_pixels: int = 1024 * 1024
    upscale_factor: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> FollowUpLimits:
        return cls(max_pixels=settings.max_pixels, upscale_factor=settings.upscale_factor)


def canonical_action(name: str) -> str:
    """The action a name stands for, legacy button names included."""
    if name in ACTIONS:
        return name
    if name in LEGACY_ACTIONS:
        return LEGACY_ACTIONS[name]
    raise PromptError(f"Unknown action {name!r}: use one of {', '.join(ACTIONS)}.")


def follow_up(parent: Job, index: int | None, action: str,
              limits: FollowUpLimits) -> ImageRequest:
    """The request of `action` on image `index` (0-based) of `parent`.

    - reroll: the same request with a new seed (also for a failed or cancelled job);
    - vary_subtle / vary_strong: img2img from the image, a new seed, the parent's image count
      (a grid of variations, as the parent was a grid: the user chose how many with --n);
    - upscale: the image redrawn at upscale_factor × its size with its own seed, one image,
      refused above IMAGINE_MAX_PIXELS.
    """
    action = canonical_action(action)
    if not parent.status.finished:
        raise JobNotReady(f"That job is still {parent.status.value}; wait until it is done, "
                          "then try again.")
    request = parent.request
    if action == REROLL:
        return request.model_copy(update={"seed": None})
    if parent.status is not JobStatus.done or not parent.images:
        why = "failed" if parent.status is JobStatus.failed else "was cancelled"
        raise NoImages(f"That job has no images (it {why}); try {REROLL} instead.")
    if index is None or not 0 <= index < len(parent.images):
        shown = "none" if index is None else index + 1
        raise PromptError(f"That job has no image {shown}: pick 1 to {len(parent.images)}.")
    source = parent.images[index]
    if action in VARY_STRENGTHS:
        return request.varied(source, VARY_STRENGTHS[action])
    seed = parent.seeds[index] if index < len(parent.seeds) else request.seed
    upscaled = request.upscaled(source, seed, limits.upscale_factor)
    if upscaled.width * upscaled.height > limits.max_pixels:
        raise PromptError(
            f"Image {index + 1} is {request.width}×{request.height}; upscaled "
            f"{limits.upscale_factor}× it would be {upscaled.width}×{upscaled.height} = "
            f"{upscaled.width * upscaled.height:,} pixels, more than this server allows "
            f"(IMAGINE_MAX_PIXELS={limits.max_pixels:,}). Ask the operator to raise it.")
    return upscaled
