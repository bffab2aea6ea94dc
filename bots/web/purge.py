"""`DELETE /api/v1/jobs/<id>?purge=1` (routed by bots.web.api.cancel_job): a finished job's
images deleted by whoever created it, the REST twin of the Delete button."""

from __future__ import annotations

from bots.web.state import WebState
from tasks.core.jobs import Job
from tasks.policy.removal import remove_job


def purged(state: WebState, job_id: str, caller: str) -> Job:
    """The job after its images, blurred copies and prompt-URL cache entry are deleted
    (audited `image.deleted` with `api:<caller>` as actor)."""
    return remove_job(state.settings, state.redis, state.storage, job_id, f"api:{caller}",
                      detail="DELETE /api/v1/jobs/<id>?purge=1")
