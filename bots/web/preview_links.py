"""Where a job's live preview is read and linked from: shared by the job JSON (bots.web.api),
the preview route (bots.web.previews_api) and the prompt-URL placeholder (bots.web.images),
without importing any of them."""

from __future__ import annotations

from flask import url_for

from bots.web.state import WebState
from tasks.core.jobs import Job
from tasks.core.previews import PreviewStore

PREVIEW_ENDPOINT = "previews_api.job_preview"


def preview_store(state: WebState) -> PreviewStore:
    # The web only reads; the TTL matters to the worker, which writes.
    return PreviewStore(state.redis, state.settings.job_timeout + 60)


def preview_url(state: WebState, job: Job) -> str | None:
    """Absolute URL of the job's latest preview, versioned by its count; None when the job
    has none or is finished (its images are the thing to show then)."""
    if job.preview <= 0 or job.status.finished:
        return None
    path = url_for(PREVIEW_ENDPOINT, job_id=job.id, v=job.preview)
    return f"{state.settings.public_url.rstrip('/')}{path}"


def latest_preview(state: WebState, job: Job | None) -> bytes | None:
    """The JPEG to show for a job still being drawn, if one was made."""
    if job is None or job.preview <= 0 or job.status.finished:
        return None
    return preview_store(state).get(job.id)
