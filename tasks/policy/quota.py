"""Daily quotas: IMAGINE_DAILY_QUOTA images and IMAGINE_DAILY_GPU_SECONDS per user per UTC day.

`Quotas(settings, client, clock=time.time)`; `charge(job) -> Job` counts the job's images
against its user's day (atomically) and returns the job with `charged` set, or raises
QuotaExceeded (retry_after: seconds to the reset); `refund(job)` gives back `job.charged`
images (a job that drew none); `add_gpu_seconds(job, seconds)`; `settle(job)` does what a
finished job calls for; `usage(user_key, roles) -> QuotaUsage`; `set_override(user_key,
images | None)`.

Counts live in one hash per user and UTC day (QUOTA_KEY) that expires a day after its day
ends. The hash also remembers each job it charged (`job:<id>`) and each job whose seconds
it added (`gpu:<id>`), so a refund or an addition done twice (a retried finish, a cancel
racing a failure) counts once, and a refund goes back to the day that was charged even
after midnight. Usage is counted even with no limit, so an admin who sets one mid-day and
`/quota` see the real figure.

Whose quota: the requester's user key, except that callers known only by an address (prompt
URLs, the API and webhooks without a named token) share one key per address, `ip:<address>`,
and webhook jobs of a named token count as that token's API jobs.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import redis

from settings import Settings
from settings.i18n import _
from tasks.core.jobs import EXTRA_ROLES, Job, JobStatus, Requester
from tasks.errors import QuotaExceeded
from tasks.names import QUOTA_KEY, QUOTA_OVERRIDE_KEY

DAY = 86_400
# A day's hash outlives its day by one more, for refunds of jobs that finish after midnight.
KEY_TTL = 2 * DAY
IMAGES, GPU = "images", "gpu_seconds"
ANONYMOUS_PLATFORMS = frozenset({"web", "api", "webhook"})
# What IMAGINE_QUOTA_OVERRIDES calls a group a user belongs to, by platform.
GROUP_PREFIX = {"discord": "discord:role:", "slack": "slack:group:"}

# Check and add in one step, so two submits at once cannot both take the last image.
# Returns {admitted (1) or refused on images (0) or GPU time (-1), images used, GPU used}.
CHARGE = """
local used = tonumber(redis.call('HGET', KEYS[1], 'images') or '0')
local gpu = tonumber(redis.call('HGET', KEYS[1], 'gpu_seconds') or '0')
local n, limit, gpu_limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if limit > 0 and used + n > limit then return {0, used, tostring(gpu)} end
if gpu_limit > 0 and gpu >= gpu_limit then return {-1, used, tostring(gpu)} end
used = redis.call('HINCRBY', KEYS[1], 'images', n)
redis.call('HSET', KEYS[1], 'job:' .. ARGV[4], n)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, used, tostring(gpu)}
"""
# Give a job's images back to whichever of the days (today, yesterday) charged it, once.
REFUND = """
for _, key in ipairs(KEYS) do
  local n = tonumber(redis.call('HGET', key, 'job:' .. ARGV[1]) or '0')
  if n > 0 then
    redis.call('HSET', key, 'job:' .. ARGV[1], 0)
    return redis.call('HINCRBY', key, 'images', -n)
  end
end
return -1
"""
# Add a job's generation seconds once.
ADD_GPU = """
if redis.call('HSETNX', KEYS[1], 'gpu:' .. ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'gpu_seconds', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


@dataclass(frozen=True)
class QuotaUsage:
    """One user's day: what was used, the limits that apply (None: no limit), the reset."""

    user: str
    images_used: int
    images_limit: int | None
    gpu_used: float
    gpu_limit: float | None
    seconds_to_reset: int

    @property
    def images_left(self) -> int | None:
        return None if self.images_limit is None else max(0, self.images_limit - self.images_used)

    @property
    def gpu_left(self) -> float | None:
        return None if self.gpu_limit is None else max(0.0, self.gpu_limit - self.gpu_used)

    @property
    def unlimited(self) -> bool:
        return self.images_limit is None and self.gpu_limit is None


def quota_user(requester: Requester) -> str:
    """The key a requester's quota is counted under (see the module's docstring)."""
    if requester.platform in ANONYMOUS_PLATFORMS:
        try:
            ipaddress.ip_network(requester.user, strict=False)
        except ValueError:
            if requester.platform == "webhook":
                return f"api:{requester.user}"
        else:
            return f"ip:{requester.user}"
    return requester.user_key


def job_roles(requester: Requester) -> list[str]:
    """The Discord role ids / Slack user-group ids the front end recorded for the job."""
    return [part for part in requester.extra.get(EXTRA_ROLES, "").split(",") if part]


def format_reset(seconds: float) -> str:
    """"3 h 12 min", "12 min", "40 s": how long until the reset, for a message."""
    seconds = max(0, math.ceil(seconds))
    hours, minutes = seconds // 3600, seconds % 3600 // 60
    if hours:
        return _("{hours} h {minutes} min").format(hours=hours, minutes=minutes)
    if minutes:
        return _("{minutes} min").format(minutes=minutes)
    return _("{seconds} s").format(seconds=seconds)


class Quotas:
    def __init__(self, settings: Settings, client: redis.Redis,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.redis = client
        self.clock = clock
        self._charge = client.register_script(CHARGE)
        self._refund = client.register_script(REFUND)
        self._add_gpu = client.register_script(ADD_GPU)

    # --- days ---------------------------------------------------------------------------
    def _day(self, offset: int = 0) -> str:
        moment = datetime.fromtimestamp(self.clock(), timezone.utc) + timedelta(days=offset)
        return moment.strftime("%Y-%m-%d")

    def _key(self, user: str, offset: int = 0) -> str:
        return QUOTA_KEY.format(self._day(offset), user)

    def seconds_to_reset(self) -> int:
        """Seconds until the next 00:00 UTC (at least 1)."""
        now = self.clock()
        return max(1, math.ceil((math.floor(now / DAY) + 1) * DAY - now))

    # --- limits ---------------------------------------------------------------------------
    def limits(self, user: str, roles: Iterable[str] = ()) -> tuple[int | None, float | None]:
        """Daily images and GPU seconds for `user` (None: no limit). An admin's override
        wins over all; else the largest IMAGINE_QUOTA_OVERRIDES entry of the user's roles
        or groups; else IMAGINE_DAILY_QUOTA. An override of 0 lifts both limits."""
        override = self._override(user)
        if override is None:
            override = self._group_override(user, roles)
        if override == 0:
            return None, None
        images = override if override is not None else (self.settings.daily_quota or None)
        return images, self.settings.daily_gpu_seconds or None

    def _override(self, user: str) -> int | None:
        raw = self.redis.hget(QUOTA_OVERRIDE_KEY, user)
        return None if raw is None else int(raw)  # type: ignore[arg-type]

    def _group_override(self, user: str, roles: Iterable[str]) -> int | None:
        prefix = GROUP_PREFIX.get(user.partition(":")[0])
        if prefix is None:
            return None
        found = [self.settings.quota_overrides[f"{prefix}{role}"] for role in roles
                 if f"{prefix}{role}" in self.settings.quota_overrides]
        if not found:
            return None
        return 0 if 0 in found else max(found)

    def set_override(self, user: str, images: int | None) -> None:
        """An admin's daily images for `user` (0: no limit); None goes back to the rules."""
        if images is None:
            self.redis.hdel(QUOTA_OVERRIDE_KEY, user)
        else:
            self.redis.hset(QUOTA_OVERRIDE_KEY, user, max(0, int(images)))

    # --- counting ---------------------------------------------------------------------------
    def charge(self, job: Job) -> Job:
        """`job` with `charged` set to its images; QuotaExceeded when the day has no room."""
        user = quota_user(job.requester)
        images, gpu = self.limits(user, job_roles(job.requester))
        n = max(1, job.request.num_images)
        code, used, gpu_used = self._charge(
            keys=[self._key(user)], args=[n, images or 0, gpu or 0, job.id, KEY_TTL])
        if int(code) == 1:
            return job.model_copy(update={"charged": n})
        raise self._exceeded(int(code), n, int(used), float(gpu_used), images, gpu)

    def _exceeded(self, code: int, n: int, used: int, gpu_used: float, images: int | None,
                  gpu: float | None) -> QuotaExceeded:
        wait = self.seconds_to_reset()
        reset = _("Your quota resets at 00:00 UTC, in {wait}.").format(wait=format_reset(wait))
        if code == -1 and gpu is not None:
            text = _("You have used {used:.0f} of your {limit:.0f} GPU seconds today.").format(
                used=gpu_used, limit=gpu)
            return QuotaExceeded(" ".join((text, reset)), rule="quota: gpu seconds", retry_after=wait)
        limit = images or 0
        text = _("You have used {used} of your {limit} images today.").format(
            used=used, limit=limit)
        if used < limit:  # some are left, fewer than this job makes
            text += " " + _("This job makes {n}; ask for at most {left} (--n {left}).").format(
                n=n, left=limit - used)
        return QuotaExceeded(" ".join((text, reset)), rule="quota: images", retry_after=wait)

    def refund(self, job: Job) -> None:
        """Give back the images `job` was charged (it drew none); once, to the day charged."""
        if job.charged:
            user = quota_user(job.requester)
            self._refund(keys=[self._key(user), self._key(user, -1)], args=[job.id])

    def add_gpu_seconds(self, job: Job, seconds: float) -> None:
        """Add the generation seconds of a finished job to its user's day, once."""
        if seconds > 0:
            self._add_gpu(keys=[self._key(quota_user(job.requester))],
                          args=[job.id, f"{seconds:.3f}", KEY_TTL])

    def settle(self, job: Job) -> None:
        """What a finished job means for its quota: its GPU time counted, or its images
        given back when it ended with none (failed, cancelled)."""
        if job.status is JobStatus.done and job.images:
            if job.generation_seconds:  # a batch's time, shared by the jobs drawn in it
                self.add_gpu_seconds(job, job.generation_seconds / max(1, job.batch_size))
        elif job.status.finished and not job.images:
            self.refund(job)

    def usage(self, user: str, roles: Iterable[str] = ()) -> QuotaUsage:
        """Where `user` (a quota user key: see quota_user) stands today."""
        roles = list(roles)
        used, gpu_used = self.redis.hmget(self._key(user), [IMAGES, GPU])
        images, gpu = self.limits(user, roles)
        return QuotaUsage(user=user, images_used=int(used or 0), images_limit=images,
                          gpu_used=float(gpu_used or 0), gpu_limit=gpu,
                          seconds_to_reset=self.seconds_to_reset())

    def usage_of(self, requester: Requester) -> QuotaUsage:
        """Where the user behind `requester` stands today (their roles or groups included)."""
        return self.usage(quota_user(requester), job_roles(requester))
