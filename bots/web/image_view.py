"""A job's images as the REST API's job view and webhooks show them, with image safety's
verdict on each (#15).

Every image says `nsfw: {score, flagged, action}`. A blocked image has no `name` nor `url`
(null) and says it was withheld; a spoilered image's `url` is its blurred copy and `original_url` the
original: the API caller is the requester (their token or address made the job), so the
original is theirs to fetch explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bots.safety_view import BLOCK, PIPELINE, SPOILER, verdict_view
from settings.i18n import N_, _
from tasks.core.jobs import Job

WITHHELD = N_("Withheld by this server's image policy.")
WITHHELD_BY_MODEL = N_("Withheld by the model's safety checker.")


def image_views(job: Job, image_url: Callable[[str], str]) -> list[dict[str, Any]]:
    """One dict per image of `job`: name, url, width, height, seed, nsfw (and
    original_url for a spoilered image, withheld for a blocked one)."""
    views = []
    for index, name in enumerate(job.images):
        verdict = job.verdict(index)
        width, height = job.image_size(index)
        view: dict[str, Any] = {
            "name": name, "url": image_url(name), "width": width, "height": height,
            "seed": job.seeds[index] if index < len(job.seeds) else None,
            "nsfw": verdict_view(verdict)}
        if verdict.action == BLOCK:  # not even its name: /images/<name>.png would serve it
            view["name"] = view["url"] = None
            why = WITHHELD_BY_MODEL if verdict.source == PIPELINE else WITHHELD
            view["withheld"] = _(why)
        elif verdict.action == SPOILER:
            view["url"] = image_url(verdict.blurred) if verdict.blurred else None
            view["original_url"] = image_url(name)
        views.append(view)
    return views
