"""Daily quotas: IMAGINE_DAILY_QUOTA images and IMAGINE_DAILY_GPU_SECONDS per user per UTC day.

CONTRACT (to be implemented): `Quotas(settings, client, clock=time.time)`;
`charge(job) -> Job` counts the job's images against its user's day (atomically) and returns
the job with `charged` set, or raises QuotaExceeded (retry_after: seconds to the reset);
`refund(job)` gives back `job.charged` images (a job that drew none); `add_gpu_seconds(job,
seconds)`; `usage(user_key, roles) -> QuotaUsage`; `set_override(user_key, images | None)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from settings import Settings
from tasks.core.jobs import Job


class Quotas:
    def __init__(self, settings: Settings, client: redis.Redis,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.redis = client
        self.clock = clock

    def charge(self, job: Job) -> Job:
        return job

    def refund(self, job: Job) -> None:
        return None
