"""A job as the REST API, the webhooks and the region page show it (JSON)."""

from __future__ import annotations

from typing import Any

from flask import url_for

from bots.grammar import format_request
from bots.web.image_view import image_views
from bots.web.preview_links import preview_url
from bots.web.state import WebState
from tasks.core.jobs import Job, JobStatus


def job_view(state: WebState, job: Job, position: int | None = None,
             eta: float | None = None) -> dict[str, Any]:
    """A job as the API shows it; `position` and `eta_seconds` only while it waits."""
    if job.status is JobStatus.queued:
        position = position or state.queue.position(job.id)
        if eta is None and position is not None:
            eta = state.queue.eta(position, job.request.model)
    else:
        position, eta = None, None
    self_url = absolute_url(state, url_for("api.get_job", job_id=job.id))
    return {
        "id": job.id,
        "status": job.status.value,
        "progress": round(job.progress, 4),
        "step": job.step,
        "total_steps": job.total_steps,
        "phase": job.phase,
        "preview_url": preview_url(state, job),
        "position": position,
        "eta_seconds": None if eta is None else round(eta, 1),
        "prompt": format_request(job.request, state.limits),
        "platform": job.requester.platform,
        "images": image_views(job, state.image_url),
        "notes": list(job.notes),
        # What the user wrote when the prompt drawn differs: translated or enhanced (#16).
        "prompt_original": job.prompt_original, "prompt_language": job.prompt_language,
        "enhanced": job.enhanced,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "links": {"self": self_url},
    }


def absolute_url(state: WebState, path: str) -> str:
    """`path` of this server as the address its users reach it at (IMAGINE_PUBLIC_URL)."""
    return state.settings.public_url.rstrip("/") + path
