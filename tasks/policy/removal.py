"""Deleting a finished job's images: the Delete button (its requester or a moderator), the
REST API (`DELETE /api/v1/jobs/<id>?purge=1`) and the admins' `delete` command share this.

What goes: the stored images and their blurred copies, the prompt-URL cache entry that
points at the job (found through URL_JOB_KEY; the URL draws its image again on the next
request, so published URLs keep working), the job's place in the list of withheld images.
What stays: the job record, marked with `deleted_by` (its image names now name nothing),
and the audit entry `image.deleted`. The chat messages are the front end's to delete: only it knows them.
"""

from __future__ import annotations

import logging

import redis

from settings import Settings
from tasks.core.jobs import Job, JobStore
from tasks.core.store_base import ImageStore
from tasks.names import BLOCKED_IMAGES_KEY, URL_CACHE_KEY, URL_JOB_KEY
from tasks.policy.audit import AuditLog
from tasks.policy.gate import job_entry

log = logging.getLogger(__name__)

# Delete the cache entry only if it still points at this job: a later claim must survive.
_FORGET = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['job'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def stored_names(job: Job) -> list[str]:
    """Every stored file of the job's results: the images and their blurred copies."""
    blurred = [v.blurred for v in job.verdicts if v.blurred]
    return list(dict.fromkeys([*job.images, *blurred]))


def delete_images(job: Job, storage: ImageStore) -> list[str]:
    """Delete the job's images and blurred copies from storage; the names deleted (a file
    already gone is not an error: deleting twice is deleting once)."""
    deleted = []
    for name in stored_names(job):
        if storage.exists(name):
            storage.delete(name)
            deleted.append(name)
    return deleted


def forget_prompt_url(client: redis.Redis, job: Job) -> bool:
    """Drop the prompt-URL cache entry that points at `job`; True when there was one."""
    raw = client.get(URL_JOB_KEY.format(job.id))
    if raw is None:
        return False
    key = raw.decode() if isinstance(raw, bytes) else str(raw)
    forgotten = client.eval(_FORGET, 1, URL_CACHE_KEY.format(key), job.id)
    client.delete(URL_JOB_KEY.format(job.id))
    return bool(forgotten)


def remove_job(settings: Settings, client: redis.Redis, storage: ImageStore, job_id: str,
               actor: str, *, detail: str = "") -> Job:
    """Delete `job_id`'s images everywhere but in chat, mark it deleted by `actor` (a user
    key) and audit `image.deleted`. JobNotFound when its record expired."""
    jobs = JobStore(client, settings.job_ttl)
    job = jobs.get(job_id)
    deleted = delete_images(job, storage)
    forget_prompt_url(client, job)
    withheld = [f"{job.id}:{index}" for index in range(len(job.images))]
    if withheld:
        client.zrem(BLOCKED_IMAGES_KEY, *withheld)
    job = jobs.update(job.id, lambda j: j.model_copy(update={"deleted_by": actor}))
    AuditLog(settings, client).record(job_entry(
        "image.deleted", job, actor=actor, outcome="deleted",
        detail=detail or f"{len(deleted)} stored file(s) deleted"))
    log.info("job %s: %d stored file(s) deleted by %s", job.id, len(deleted), actor)
    return job
