"""`GET /api/v1/jobs/<id>/preview.jpg`: the latest live preview of a running job.

Previews sit in Redis next to the job (tasks.core.previews), so any web process serves
them. They change every second or so: never cached, and the job JSON's `preview_url`
carries `?v=<n>` so a page that polls the job knows when to fetch a new one.
"""

from __future__ import annotations

from flask import Blueprint, Response

from bots.web import api
from bots.web.preview_links import latest_preview
from bots.web.state import web_state
from settings.i18n import _

bp = Blueprint("previews_api", __name__, url_prefix="/api/v1")
# The same bearer-token rule and the same JSON errors as every other API route.
bp.before_request(api.authorise)
bp.register_error_handler(api.ApiError, api.api_error)


@bp.get("/jobs/<job_id>/preview.jpg")
def job_preview(job_id: str) -> Response:
    """The JPEG, or a 404 JSON error when the job or its preview is missing."""
    state = web_state()
    job = state.queue.jobs.find(job_id)
    if job is None:
        raise api.ApiError(404, _("No job {job_id}: it never existed or has expired.").format(
                                    job_id=job_id))
    jpeg = latest_preview(state, job)
    if jpeg is None:
        shown = job.status.value if job.started_at is not None else _(
            "{status}, not started").format(status=job.status.value)
        raise api.ApiError(404, _("Job {job_id} has no preview now ({state}); previews "
                                  "exist while a job is drawn, when the server has "
                                  "IMAGINE_PREVIEW_INTERVAL above 0.").format(
                                    job_id=job.id, state=shown))
    response = Response(jpeg, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Imagine-Preview"] = str(job.preview)
    return response
