"""Image safety for `imagine generate` (#15): the images drawn on this machine are judged
like a worker's (IMAGINE_NSFW_MODEL, IMAGINE_NSFW_THRESHOLD, the model's own safety
checker; the `cli` destination of IMAGINE_NSFW_POLICY) and each flagged one gets a warning
line. The operator drew them on their own machine, so an allowed or spoilered image is still
written; a blocked one is not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from settings import Settings
from settings.i18n import _

if TYPE_CHECKING:
    from generator.request import ImageRequest
    from generator.results import GeneratedImage
    from generator.safety import SafetyModel
    from tasks.core.jobs import ImageVerdict


def judge(settings: Settings, safety: SafetyModel | None, request: ImageRequest,
          images: Sequence[GeneratedImage]) -> list[ImageVerdict]:
    """One verdict per image (allowed ones when nothing could flag them); `safety`: the
    engine's classifier (Engine.safety)."""
    from tasks.core.jobs import ImageVerdict, Job, Requester  # noqa: PLC0415
    from tasks.policy.safety import review  # noqa: PLC0415 - torch-free, but only here

    job = Job(requester=Requester(platform="cli"), request=request)
    # No blurred copies: the CLI writes the image itself or nothing.
    verdicts = review(settings, job, images, safety, store=lambda _png: "").verdicts
    return verdicts or [ImageVerdict() for _image in images]


def warning(verdict: ImageVerdict, number: int, path: str) -> str | None:
    """The warning line of a flagged image; None for one that is not."""
    if not verdict.flagged:
        return None
    if verdict.source == "pipeline":
        why = _("the model's own safety checker withheld it (a black image)")
    else:
        why = _("NSFW score {score:.2f}").format(score=verdict.score)
    if verdict.action == "block":
        return _("warning: image {number} was flagged ({why}) and not written "
                 "(IMAGINE_NSFW_POLICY cli=block).").format(number=number, why=why)
    return _("warning: image {number} ({path}) was flagged: {why}.").format(
        number=number, path=path, why=why)
