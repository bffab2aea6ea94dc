"""The permanent map from a prompt URL's cache key to its job and, once drawn, its image.

`claim` is a SET NX: however many requests for a new key arrive at once, exactly one of them
submits a job; the others find its id and wait on the same job. Once drawn, the entry holds
the image name for ever (the image file is content-addressed, so it never changes).
"""

from __future__ import annotations

import time

import redis
from pydantic import BaseModel

from tasks.core.jobs import ImageVerdict
from tasks.names import URL_CACHE_KEY, URL_JOB_KEY

# Delete the entry only if it still points at this job: a later claim must survive.
_FORGET = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['job'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Entry(BaseModel):
    job: str
    image: str | None = None
    at: float  # when the job was claimed; a claim without a job record is young or stale
    # Image safety's verdict on the image (#15), kept here since the entry outlives the job
    # record: allow | spoiler (`blurred` names the blurred copy served instead) | block.
    # Entries of earlier releases have none: allowed.
    action: str = "allow"
    blurred: str | None = None

    @property
    def verdict(self) -> ImageVerdict:
        return ImageVerdict(action=self.action, blurred=self.blurred)


class PromptCache:
    def __init__(self, client: redis.Redis, pending_ttl: int) -> None:
        self.redis = client
        self.pending_ttl = pending_ttl
        self._forget = client.register_script(_FORGET)

    def get(self, key: str) -> Entry | None:
        raw = self.redis.get(URL_CACHE_KEY.format(key))
        return Entry.model_validate_json(raw) if raw else None

    def claim(self, key: str, job_id: str) -> Entry:
        """The entry for this key: a new one for `job_id`, or the one another request made."""
        entry = Entry(job=job_id, at=time.time())
        while True:
            # A claim expires with the job record, so a job lost without a trace frees its key.
            if self.redis.set(URL_CACHE_KEY.format(key), entry.model_dump_json(), nx=True,
                              ex=self.pending_ttl):
                self._point_back(key, job_id)
                return entry
            existing = self.get(key)
            if existing is not None:
                return existing
            # Forgotten between our SET and GET (its job failed just then): claim again.

    def remember(self, key: str, job_id: str, image: str, action: str = "allow",
                 blurred: str | None = None) -> None:
        """The image is made: keep the entry for ever, with its safety verdict."""
        entry = Entry(job=job_id, image=image, at=time.time(), action=action, blurred=blurred)
        self.redis.set(URL_CACHE_KEY.format(key), entry.model_dump_json())
        self._point_back(key, job_id)

    def _point_back(self, key: str, job_id: str) -> None:
        # Deleting a job (tasks/policy/removal.py) finds its entry here instead of scanning
        # every entry; it lives as long as the job record, the only way to name the job.
        self.redis.set(URL_JOB_KEY.format(job_id), key, ex=self.pending_ttl)

    def forget(self, key: str, job_id: str) -> None:
        """The job failed or vanished: the next request for this key may try again."""
        self._forget(keys=[URL_CACHE_KEY.format(key)], args=[job_id])
