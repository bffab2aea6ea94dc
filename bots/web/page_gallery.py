"""The recent prompt-URL images behind `/gallery` (IMAGINE_GALLERY=true): a capped Redis list.

A prompt URL's image is recorded once, when it is made (the miss that drew it); hits are
served before Flask (bots.web.hits) and never write. The list lives in Redis, not in the
process, so every web process shows the same gallery.
"""

from __future__ import annotations

import json

import redis
from pydantic import BaseModel, ValidationError

from tasks.names import GALLERY_KEY

GALLERY_SIZE = 60  # entries kept; older ones fall off the end


class GalleryItem(BaseModel):
    image: str  # the stored image's name (content hash)
    url: str  # the prompt URL that made it, as the visitor asked for it (signed if it was)
    prompt: str  # the prompt text, for the caption and the image's alt text


class Gallery:
    def __init__(self, client: redis.Redis, size: int = GALLERY_SIZE) -> None:
        self.redis = client
        self.size = size

    def record(self, item: GalleryItem) -> None:
        """Newest first; the same image again moves to the front instead of repeating."""
        raw = item.model_dump_json()
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(GALLERY_KEY, 0, raw)
            pipe.lpush(GALLERY_KEY, raw)
            pipe.ltrim(GALLERY_KEY, 0, self.size - 1)
            pipe.execute()

    def recent(self) -> list[GalleryItem]:
        items = []
        for raw in self.redis.lrange(GALLERY_KEY, 0, self.size - 1):
            try:
                items.append(GalleryItem.model_validate(json.loads(raw)))
            except (ValueError, ValidationError):  # a foreign or older entry: skip, not 500
                continue
        return items
