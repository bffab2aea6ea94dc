"""Image safety on the worker: each finished job's images judged before it is recorded done.

Where an image goes is its destination (`destination`): Discord splits into age-restricted
channels (the channel's `nsfw` flag), other channels and DMs, Slack into channels and DMs;
the web, the REST API, webhooks and the CLI are their own. The operator's policy
(IMAGINE_NSFW_POLICY over settings.governance.DEFAULT_SAFETY_POLICY) gives each destination
an action for a flagged image: allow, spoiler or block.

An image is flagged when the classifier of IMAGINE_NSFW_MODEL gives it at least
IMAGINE_NSFW_THRESHOLD, or when the model's own safety checker withheld it (a black image:
source "pipeline", score 1.0; the user is told why). `spoiler` outside Discord (which has
SPOILER_ attachments) stores a blurred copy to show instead; `block` keeps the image in
storage for admins, listed in BLOCKED_IMAGES_KEY, and the front ends do not deliver it
(bots/safety_view.py shows verdicts for every front end). Every flagged image is audited.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis
from PIL import Image, ImageFilter

from settings import Settings
from settings.errors import ImagineError
from settings.i18n import N_, _, use_locale
from tasks.core.jobs import EXTRA_DM, EXTRA_LOCALE, EXTRA_NSFW_CHANNEL, ImageVerdict, Job, Requester
from tasks.names import BLOCKED_IMAGES_KEY
from tasks.policy.audit import AuditLog
from tasks.policy.gate import job_entry

if TYPE_CHECKING:
    from generator.results import GeneratedImage
    from generator.safety import SafetyModel

log = logging.getLogger(__name__)

CLASSIFIER, PIPELINE = "classifier", "pipeline"
ALLOW, SPOILER, BLOCK = "allow", "spoiler", "block"
# Destinations of the front ends this module knows by platform name.
_OWN_DESTINATIONS = ("web", "api", "webhook", "cli")
# A platform no destination names gets the policy of prompt URLs, the strictest default.
_UNKNOWN = "web"
# Slack's DM channel ids start with D (channels C, private groups G).
_SLACK_DM_PREFIX = "D"
# The blur's radius as a share of the image's longer side: at 1/20 shapes are left, content
# is not (a 512 px image: radius 25).
BLUR_SHARE = 1 / 20
# Past-tense names of actions, as the audit trail's outcomes read.
_OUTCOMES = {ALLOW: "allowed", SPOILER: "spoiler", BLOCK: "blocked"}

PIPELINE_NOTE = N_("The model's own safety checker withheld image {number}: it came back black.")
CHECK_FAILED = N_("The images were drawn but could not be checked for safety, so they are not "
                  "shown; the operator must check IMAGINE_NSFW_MODEL (the worker log says why).")

Store = Callable[[bytes], str]


class SafetyCheckFailed(ImagineError):
    """The classifier could not judge a job's images: the job fails rather than deliver
    unchecked images."""


@dataclass
class Review:
    """A job's verdicts (one per image; empty when nothing judged them) and the notes for
    its user."""

    verdicts: list[ImageVerdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def destination(requester: Requester) -> str:
    """Where the requester's images go, as the safety policy names it."""
    extra = requester.extra
    if requester.platform == "discord":
        # A DM first: it has no age-restricted flag, and DMs allow nothing unless configured.
        if extra.get(EXTRA_DM) == "1":
            return "discord_dm"
        return "discord_nsfw" if extra.get(EXTRA_NSFW_CHANNEL) == "1" else "discord"
    if requester.platform == "slack":
        dm = extra.get(EXTRA_DM) == "1" or requester.channel.startswith(_SLACK_DM_PREFIX)
        return "slack_dm" if dm else "slack"
    return requester.platform if requester.platform in _OWN_DESTINATIONS else _UNKNOWN


def action_for(settings: Settings, requester: Requester) -> str:
    """What the policy does with a flagged image of this requester: allow, spoiler, block."""
    return settings.safety_policy.get(destination(requester), BLOCK)


def review(settings: Settings, job: Job, images: Sequence[GeneratedImage],
           model: SafetyModel | None, store: Store) -> Review:
    """Judge a finished job's images: classify them in one pass (when IMAGINE_NSFW_MODEL is
    set), flag, apply the destination's action, store blurred copies with `store`.
    SafetyCheckFailed when the classifier fails."""
    pipeline_flags = [image.pipeline_flagged for image in images]
    scores = _scores(job, images, model)
    if scores is None and not any(pipeline_flags):
        return Review()
    action = action_for(settings, job.requester)
    blur = action == SPOILER and not destination(job.requester).startswith("discord")
    verdicts = []
    for index, image in enumerate(images):
        score = scores[index] if scores is not None else 0.0
        if pipeline_flags[index]:
            verdict = ImageVerdict(score=1.0, flagged=True, source=PIPELINE, action=action)
        elif scores is not None and score >= settings.nsfw_threshold:
            verdict = ImageVerdict(score=score, flagged=True, source=CLASSIFIER, action=action)
        else:
            verdict = ImageVerdict(score=score)
        if verdict.flagged and blur:
            verdict.blurred = store(blurred_png(picture(image)))
        verdicts.append(verdict)
    return Review(verdicts, notes_for(job, verdicts))


def _scores(job: Job, images: Sequence[GeneratedImage],
            model: SafetyModel | None) -> list[float] | None:
    """Each image's NSFW probability; None when no classifier is configured."""
    if model is None or model.source is None or not images:
        return None
    try:
        classifier = model.get()
        if classifier is None:
            return None
        return classifier.classify([picture(image) for image in images])
    except Exception as exc:  # unchecked images must not go out: the job fails instead
        log.error("job %s: classifying its images failed", job.id, exc_info=exc)
        with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
            raise SafetyCheckFailed(_(CHECK_FAILED)) from exc


def notes_for(job: Job, verdicts: Sequence[ImageVerdict]) -> list[str]:
    """What the requester is told, in the job's language: why an image is black. A blocked
    image is not delivered, and the front ends already say so (bots/safety_view.py)."""
    with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
        return [_(PIPELINE_NOTE).format(number=index + 1)
                for index, verdict in enumerate(verdicts)
                if verdict.source == PIPELINE and verdict.action != BLOCK]


def record(settings: Settings, client: redis.Redis, job: Job,
           verdicts: Sequence[ImageVerdict]) -> None:
    """List blocked images for admins and audit every flagged one (image.flagged, or
    image.blocked), with its score and what decided."""
    where = destination(job.requester)
    blocked = {f"{job.id}:{index}": time.time() for index, verdict in enumerate(verdicts)
               if verdict.action == BLOCK and verdict.flagged}
    if blocked:
        client.zadd(BLOCKED_IMAGES_KEY, blocked)
    audit = AuditLog(settings, client)
    for index, verdict in enumerate(verdicts):
        if not verdict.flagged:
            continue
        event = "image.blocked" if verdict.action == BLOCK else "image.flagged"
        rule = ("pipeline safety checker" if verdict.source == PIPELINE
                else f"nsfw score >= {settings.nsfw_threshold:g}")
        audit.record(job_entry(event, job, outcome=_OUTCOMES.get(verdict.action, verdict.action),
                               nsfw_score=round(verdict.score, 4), rule=rule,
                               detail=f"image {index + 1} of {len(verdicts)} to {where}"))


def picture(image: GeneratedImage) -> Image.Image:
    """The image as pixels (decoded from its PNG when only the bytes are kept)."""
    if image.image is not None:
        return image.image
    with Image.open(io.BytesIO(image.png)) as opened:
        return opened.convert("RGB")


def blurred_png(image: Image.Image) -> bytes:
    """A copy blurred enough to hide what it shows (shapes and colours stay), as PNG."""
    radius = max(image.width, image.height) * BLUR_SHARE
    blurred = image.convert("RGB").filter(ImageFilter.GaussianBlur(radius))
    buffer = io.BytesIO()
    blurred.save(buffer, format="PNG")
    return buffer.getvalue()
