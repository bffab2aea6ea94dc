"""The latest preview of each running job, as a small JPEG in Redis.

Previews are news, not results: they live next to the job record with a short TTL, so any
web server or deliver worker on any host can serve or post them, and nothing is left
behind on disk. The job record's `preview` counts them, which is what clients compare.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import redis

from tasks.names import PREVIEW_KEY

if TYPE_CHECKING:
    from PIL.Image import Image

JPEG_QUALITY = 70
# Longest side kept (generator.previews makes 256 already; a bigger picture is shrunk here
# so Redis and chat uploads stay a few KB whatever made it).
MAX_SIDE = 256


def encode_preview(image: Image) -> bytes:
    """A small JPEG of `image`: at most MAX_SIDE px a side, quality JPEG_QUALITY."""
    picture = image.convert("RGB")
    if max(picture.size) > MAX_SIDE:
        picture.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class PreviewStore:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl

    def put(self, job_id: str, jpeg: bytes) -> None:
        self.redis.set(PREVIEW_KEY.format(job_id), jpeg, ex=self.ttl)

    def get(self, job_id: str) -> bytes | None:
        data = self.redis.get(PREVIEW_KEY.format(job_id))
        return bytes(data) if data is not None else None  # type: ignore[arg-type]

    def drop(self, job_id: str) -> None:
        self.redis.delete(PREVIEW_KEY.format(job_id))
