"""What the web views share: settings, the queue, storage, the prompt cache, the limiter."""

from __future__ import annotations

import ipaddress
import sys
import threading
from dataclasses import dataclass, field

import redis
from flask import current_app, request

from bots.limits import Limits
from bots.web.cache import PromptCache
from bots.web.ratelimit import RateLimiter
from bots.web.s3_images import RemoteImages
from settings import Settings
from tasks.core import metrics
from tasks.core.queue import JobQueue
from tasks.core.retention import ServedDays
from tasks.core.storage import ImageStore
from tasks.names import METRICS_CACHE_KEY

EXTENSION = "imagine.web"
# Threads kept free of waiting requests, so cache hits, the API and /healthz are answered
# while slow misses wait for their images.
RESERVED_THREADS = 4
ONE_YEAR = 31_536_000
# Cache keys whose image is known, so a repeated hit needs no Redis: one fixed-size entry
# per image made (never per spelling of a URL). Cleared when full rather than kept as LRU.
MEMO_BYTES = 16 * 1024 * 1024
MEMO_ENTRY_OVERHEAD = 120  # bytes of a dict slot and its hash, besides the two strings


class Memo:
    """A map of normalised prompt-URL parameters (`memo_key`) → image name, bounded in bytes.

    Safe to keep: a request's image never changes; a stale entry (its file removed) is
    checked by the caller."""

    def __init__(self, max_bytes: int = MEMO_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._images: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        return self._images.get(key)

    def put(self, key: str, image: str) -> None:
        cost = sys.getsizeof(key) + sys.getsizeof(image) + MEMO_ENTRY_OVERHEAD
        with self._lock:
            if key in self._images:
                return
            if self.bytes + cost > self.max_bytes:
                self._images.clear()
                self.bytes = 0
            self._images[key] = image
            self.bytes += cost

    def __len__(self) -> int:
        return len(self._images)


@dataclass
class WebState:
    settings: Settings
    queue: JobQueue
    storage: ImageStore
    limits: Limits
    cache: PromptCache
    limiter: RateLimiter
    waiters: threading.BoundedSemaphore = field(init=False)
    cache_counts: metrics.BufferedCounts = field(init=False)
    memo: Memo = field(init=False, default_factory=Memo)
    remote: RemoteImages | None = field(init=False, default=None)  # images in a bucket
    # Image retention's "last served" day, recorded once a day per image (not per hit).
    served: ServedDays = field(init=False)

    def __post_init__(self) -> None:
        self.waiters = threading.BoundedSemaphore(
            max(1, self.settings.web_threads - RESERVED_THREADS))
        self.cache_counts = metrics.BufferedCounts(self.queue.redis, METRICS_CACHE_KEY)
        self.remote = RemoteImages.of(self.storage, redirect=self.settings.s3_redirect)
        self.served = ServedDays(self.queue.redis)

    @property
    def redis(self) -> redis.Redis:
        return self.queue.redis

    @property
    def secret(self) -> str | None:
        secret = self.settings.url_secret
        return secret.get_secret_value() if secret is not None else None

    def model_source(self, name: str) -> str:
        return self.settings.model_sources.get(name, name)

    def image_url(self, name: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}/images/{name}.png"


def web_state() -> WebState:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def client_address() -> str:
    """The client's address; X-Forwarded-For is applied by ProxyFix only when trusted."""
    return request.remote_addr or "unknown"


def client_network(address: str | None = None) -> str:
    """Who limits count against: an IPv4 address, or the /64 of an IPv6 one (one host or
    home gets a whole /64, so counting its addresses one by one would limit nothing)."""
    address = client_address() if address is None else address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def wants_json() -> bool:
    """True when the client prefers JSON to an image (scripts); browsers and proxies get PNGs."""
    best = request.accept_mimetypes.best_match(["image/png", "application/json"])
    return best == "application/json"
