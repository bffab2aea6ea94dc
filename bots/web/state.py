"""What the web views share: settings, the queue, storage, the prompt cache, the limiter."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis
from flask import current_app, request

from bots.limits import Limits
from bots.web.cache import PromptCache
from bots.web.ratelimit import RateLimiter
from settings import Settings
from tasks.core import metrics
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.names import METRICS_CACHE_KEY

EXTENSION = "imagine.web"
# Threads kept free of waiting requests, so cache hits, the API and /healthz are answered
# while slow misses wait for their images.
RESERVED_THREADS = 4
ONE_YEAR = 31_536_000
# Raw query strings whose image is known, so a repeated hit needs no parsing and no Redis.
# Safe to keep: a key's image never changes. Cleared when full rather than tracked as LRU.
MEMO_SIZE = 50_000


@dataclass
class WebState:
    settings: Settings
    queue: JobQueue
    storage: Storage
    limits: Limits
    cache: PromptCache
    limiter: RateLimiter
    waiters: threading.BoundedSemaphore = field(init=False)
    cache_counts: metrics.BufferedCounts = field(init=False)
    memo: dict[bytes, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.waiters = threading.BoundedSemaphore(
            max(1, self.settings.web_threads - RESERVED_THREADS))
        self.cache_counts = metrics.BufferedCounts(self.queue.redis, METRICS_CACHE_KEY)

    def memorise(self, query_string: bytes, image: str) -> None:
        if len(self.memo) >= MEMO_SIZE:
            self.memo.clear()
        self.memo[query_string] = image

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


def wants_json() -> bool:
    """True when the client prefers JSON to an image (scripts); browsers and proxies get PNGs."""
    best = request.accept_mimetypes.best_match(["image/png", "application/json"])
    return best == "application/json"
