"""Where Redis is: the configured URL, or the embedded server under the data folder."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import redis

from settings import Settings


def embedded_redis_dir(settings: Settings) -> Path:
    return settings.data_dir / "redis"


def redis_url(settings: Settings) -> str:
    """The URL redis-py understands: IMAGINE_REDIS_URL, or the embedded server's socket."""
    if settings.redis_url:
        return settings.redis_url
    return f"unix://{embedded_redis_dir(settings) / 'redis.sock'}?db=0"


def celery_url(url: str) -> str:
    """Celery (kombu) spells unix sockets `redis+socket://path?virtual_host=N`."""
    if not url.startswith("unix://"):
        return url
    parsed = urlparse(url)
    db = parse_qs(parsed.query).get("db", ["0"])[0]
    return f"redis+socket://{parsed.path}?virtual_host={db}"


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(redis_url(settings), health_check_interval=30)
