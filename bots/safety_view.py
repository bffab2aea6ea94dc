"""How every front end shows image safety's verdicts (Job.verdicts), once for all of them.

The worker decided (tasks/policy/safety.py): each image of a finished job is allowed,
spoilered or blocked for where it goes. Here is what follows from that for a front end:
which images to show and in which form (`shown`), what the requester is told about those
withheld (`withheld_lines`), and who may see a spoilered image's original (`may_reveal`).
Pure: no I/O, no platform. Texts are translated in the job's language.
"""

from __future__ import annotations

from dataclasses import dataclass

from settings.i18n import _, ngettext, use_locale
from tasks.core.jobs import EXTRA_LOCALE, ImageVerdict, Job

ALLOW, SPOILER, BLOCK = "allow", "spoiler", "block"
PIPELINE = "pipeline"  # verdict.source of the model's own safety checker


@dataclass(frozen=True)
class ShownImage:
    """One image a front end shows: its place in the job, the stored name to send (the
    blurred copy of a spoilered image where the front end has no spoiler of its own), and
    whether it is spoilered."""

    index: int
    name: str
    seed: int
    spoiler: bool
    original: str  # the stored name of the image itself


def shown(job: Job, *, blur: bool) -> list[ShownImage]:
    """The images of `job` to deliver, in order, blocked ones left out. `blur`: send a
    spoilered image as its blurred copy (Slack, the web); without one, it is withheld too
    (never the original by mistake). Without `blur` (Discord) the original is sent and the
    front end marks it as a spoiler."""
    out = []
    for index, name in enumerate(job.images):
        verdict = job.verdict(index)
        seed = job.seeds[index] if index < len(job.seeds) else job.request.seed or 0
        if verdict.action == BLOCK:
            continue
        if verdict.action == SPOILER:
            if blur and not verdict.blurred:
                continue
            out.append(ShownImage(index, verdict.blurred if blur and verdict.blurred else name,
                                  seed, True, name))
            continue
        out.append(ShownImage(index, name, seed, False, name))
    return out


def withheld(job: Job, *, blur: bool) -> list[int]:
    """The indexes of images `shown` leaves out."""
    kept = {image.index for image in shown(job, blur=blur)}
    return [index for index in range(len(job.images)) if index not in kept]


def withheld_lines(job: Job, *, blur: bool) -> list[str]:
    """What the requester is told about images not delivered: how many, and by whom (this
    server's image policy, or the model's own safety checker); in the job's language."""
    indexes = withheld(job, blur=blur)
    by_pipeline = sum(1 for i in indexes if job.verdict(i).source == PIPELINE)
    by_policy = len(indexes) - by_pipeline
    lines = []
    with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
        if by_policy:
            lines.append(ngettext(
                "{count} image was withheld by this server's image policy.",
                "{count} images were withheld by this server's image policy.",
                by_policy).format(count=by_policy))
        if by_pipeline:
            lines.append(ngettext(
                "{count} image was withheld by the model's safety checker.",
                "{count} images were withheld by the model's safety checker.",
                by_pipeline).format(count=by_pipeline))
    return lines


def spoilered(job: Job) -> list[int]:
    """The indexes of spoilered images (whose original the requester may ask for)."""
    return [index for index in range(len(job.images)) if job.verdict(index).action == SPOILER]


def may_reveal(job: Job, user: str) -> bool:
    """Only the requester sees a spoilered image's original (admins have their own command)."""
    return bool(user) and user == job.requester.user


def reveal_refusal() -> str:
    """What anyone but the requester is told when pressing Show original."""
    return _("Only the person who asked for this image can see its original.")


def nothing_to_reveal() -> str:
    return _("This result has no blurred image to show: every image is already shown as "
             "it is, or was withheld.")


def verdict_view(verdict: ImageVerdict) -> dict[str, object]:
    """A verdict as the REST API and webhooks show it."""
    return {"score": round(verdict.score, 4), "flagged": verdict.flagged,
            "action": verdict.action}
