"""Handing finished jobs (and progress) back to the platform they came from.

A platform adapter knows how to talk to one chat API; this module gives every adapter the
same guarantees: retries with backoff, a rate limit's retry-after honoured, and each step of
a delivery done at most once per job even when the deliver task runs twice.
Adapters are looked up by platform name in an `AdapterRegistry` that the composition root
(the CLI) fills with factories; this layer names no platform. The factories import their
platform's code when first called, so a GPU worker never imports a chat library and the
deliver worker imports only the platforms it actually serves.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import redis

from settings import Settings
from settings.i18n import use_locale
from tasks.core.jobs import EXTRA_LOCALE, Job
from tasks.core.storage import ImageStore
from tasks.errors import ImageMissing
from tasks.names import DELIVERED_KEY, DELIVERING_KEY, PROGRESS_PENDING_KEY

log = logging.getLogger(__name__)

T = TypeVar("T")

# The longest wait a platform may ask of us; a longer Retry-After is most likely a mistake.
MAX_RETRY_AFTER = 15 * 60.0


def retry_after_seconds(value: str | None, default: float = 5.0) -> float:
    """A Retry-After header (delta-seconds or an HTTP date, RFC 9110) in seconds, between 0
    and MAX_RETRY_AFTER; `default` when it is missing or unreadable. Every adapter reads the
    header here."""
    if not value or not value.strip():
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, IndexError):
            return default
    if not math.isfinite(seconds):
        return default
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


class RateLimited(Exception):  # noqa: N818 - the platform's own word
    """The platform asked us to wait `retry_after` seconds (at most MAX_RETRY_AFTER)."""

    def __init__(self, retry_after: float, detail: str = "") -> None:
        seconds = float(retry_after) if math.isfinite(float(retry_after)) else MAX_RETRY_AFTER
        seconds = min(MAX_RETRY_AFTER, max(0.0, seconds))
        super().__init__(f"rate limited for {seconds:.1f} s {detail}".strip())
        self.retry_after = seconds


class TransientDeliveryError(Exception):
    """Worth retrying: a 5xx, a timeout, a dropped connection."""


class PermanentDeliveryError(Exception):
    """Retrying cannot help (bad token, bot removed from the channel); logged, not retried."""


class DeliveryBusy(TransientDeliveryError):
    """Another task is delivering this job right now (or did, and died holding the lock):
    try again in `retry_after` seconds, when its lock ends."""

    def __init__(self, detail: str, retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class AdapterBusy(TransientDeliveryError):
    """The adapter has no free slot in this process right now (its own concurrency limit):
    try again in `retry_after` seconds. Not a failure: it does not count as a retry."""

    def __init__(self, detail: str, retry_after: float = 2.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass
class DeliveryContext:
    """What an adapter gets besides the job: storage, settings, and `once` for idempotency."""

    settings: Settings
    storage: ImageStore
    redis: redis.Redis
    job: Job
    kind: str

    def once(self, step: str, action: Callable[[], T]) -> T | None:
        """Run `action` unless this step of this delivery already succeeded; remember success.

        A step that crashes after the platform accepted it but before we recorded it can
        repeat: adapters pass the platform an idempotency key (Discord's nonce) where one
        exists, and make each step a single API call so that window stays tiny.
        """
        key = DELIVERED_KEY.format(self.job.id, f"{self.kind}:{step}")
        if self.redis.exists(key):
            return None
        result = action()
        self.redis.set(key, "1", ex=self.settings.job_ttl)
        return result

    def done(self, step: str) -> bool:
        return bool(self.redis.exists(DELIVERED_KEY.format(self.job.id, f"{self.kind}:{step}")))


class Adapter(Protocol):
    def deliver_result(self, ctx: DeliveryContext) -> None:
        """Post the finished job: its images, or its error, or that it was cancelled."""

    def deliver_progress(self, ctx: DeliveryContext, position: int | None) -> None:
        """Show where the job stands (queue position or step); may be skipped when busy."""


AdapterFactory = Callable[[Settings], Adapter]


class AdapterRegistry:
    """Platform name → the factory of its adapter. Platforms without one get no deliveries
    (web and API jobs are fetched by their requester), and no progress is sent for them."""

    def __init__(self, factories: Mapping[str, AdapterFactory] | None = None) -> None:
        self._factories: dict[str, AdapterFactory] = dict(factories or {})

    def register(self, platform: str, factory: AdapterFactory) -> None:
        self._factories[platform] = factory

    def has_adapter(self, platform: str) -> bool:
        return platform in self._factories

    def create(self, platform: str, settings: Settings) -> Adapter:
        if platform not in self._factories:
            raise LookupError(f"no delivery adapter is registered for platform {platform!r}")
        return self._factories[platform](settings)


class Deliverer:
    """Runs deliveries for the deliver worker; one per process, adapters cached."""

    def __init__(self, settings: Settings, client: redis.Redis, storage: ImageStore,
                 adapters: AdapterRegistry) -> None:
        self.settings = settings
        self.redis = client
        self.storage = storage
        self.registry = adapters
        self._adapters: dict[str, Adapter] = {}
        self._lock = threading.Lock()

    def adapter(self, platform: str) -> Adapter:
        """The platform's one adapter in this process (deliver threads ask at the same time)."""
        with self._lock:
            if platform not in self._adapters:
                self._adapters[platform] = self.registry.create(platform, self.settings)
            return self._adapters[platform]

    def deliver_result(self, job: Job) -> None:
        """Deliver once; concurrent duplicates wait their turn (DeliveryBusy is retried)."""
        if not self.registry.has_adapter(job.requester.platform):
            return
        ctx = DeliveryContext(self.settings, self.storage, self.redis, job, "result")
        if ctx.done("complete"):
            return
        lock = self.redis.lock(DELIVERING_KEY.format(job.id, "result"),
                               timeout=self.settings.delivery_lock_seconds, blocking=False)
        if not lock.acquire():
            left = self.redis.pttl(DELIVERING_KEY.format(job.id, "result"))
            raise DeliveryBusy(f"job {job.id} is being delivered by another task",
                               max(1.0, int(left) / 1000))  # type: ignore[arg-type]
        try:
            with use_locale(job.requester.extra.get(EXTRA_LOCALE)):  # the requester's language
                self.adapter(job.requester.platform).deliver_result(ctx)
            ctx.once("complete", lambda: None)
        except ImageMissing as exc:  # it will not come back: fail now, not after 25 retries
            raise PermanentDeliveryError(f"job {job.id}: {exc.message}") from None
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning("delivery lock of job %s expired while delivering", job.id)

    def deliver_progress(self, job: Job, position: int | None) -> None:
        self.redis.delete(PROGRESS_PENDING_KEY.format(job.id))
        if not self.registry.has_adapter(job.requester.platform) or job.status.finished:
            return
        if self.redis.exists(DELIVERED_KEY.format(job.id, "result:complete")):
            return  # the result is out: a progress edit now would only be stale
        ctx = DeliveryContext(self.settings, self.storage, self.redis, job, "progress")
        with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
            self.adapter(job.requester.platform).deliver_progress(ctx, position)


def claim_progress_slot(client: redis.Redis, job_id: str, seconds: float) -> bool:
    """At most one progress update per job waits in the deliver queue at a time."""
    return bool(client.set(PROGRESS_PENDING_KEY.format(job_id), "1", nx=True,
                           ex=max(1, int(seconds) + 30)))


def backoff_seconds(retries: int) -> float:
    return float(min(2 ** retries, 300))
