"""Images kept in a bucket, as the web app serves them: streamed through it (default) or,
with IMAGINE_S3_REDIRECT=true, a redirect to a presigned URL of the object.

An image name is its content hash, so bytes once read never go stale: prompt-URL hits are
answered from the hot-image memory (bots.web.hits) without a GET. Whether the object is
still there (retention may delete it) is asked of the bucket at most every CHECK_SECONDS
per image, so a hit costs no round trip to S3 most of the time, and a deleted image is
drawn again at most CHECK_SECONDS after it went.

A redirect is cacheable for REDIRECT_MAX_AGE, shorter than what remains of the presigned
URL's life when it is handed out, so no cache keeps a redirect to an expired URL; the
image behind it keeps its own immutable Cache-Control (set on the object at upload).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

from flask import Response, request

from tasks.core.storage import ImageStore, Storage, StorageError
from tasks.errors import ImageMissing

if TYPE_CHECKING:  # boto3 is imported only where a bucket is configured
    from tasks.core.s3_storage import S3Storage

CHECK_SECONDS = 30.0
PRESIGNED_SECONDS = 3600
REUSE_SECONDS = 600.0  # a presigned URL is handed out again for this long
REDIRECT_MAX_AGE = 1800
assert REDIRECT_MAX_AGE < PRESIGNED_SECONDS - REUSE_SECONDS
MAX_REMEMBERED = 100_000  # names whose check or URL is kept; cleared when full
V = TypeVar("V")


class Hot(Protocol):
    def get(self, name: str) -> bytes | None: ...

    def put(self, name: str, data: bytes) -> None: ...


class RemoteImages:
    """What the web app knows of a bucket's images: recently checked names, fresh URLs."""

    def __init__(self, store: S3Storage, *, redirect: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.redirect = redirect
        self.clock = clock
        self._checked: dict[str, float] = {}
        self._urls: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, store: ImageStore, *, redirect: bool) -> RemoteImages | None:
        """The bucket's helper, or None for a local folder (served as files)."""
        if isinstance(store, Storage):
            return None
        from tasks.core.s3_storage import S3Storage  # noqa: PLC0415

        assert isinstance(store, S3Storage), f"no web serving for {type(store).__name__}"
        return cls(store, redirect=redirect)

    def present(self, name: str) -> bool:
        """Whether the object exists, asked of the bucket at most every CHECK_SECONDS."""
        now = self.clock()
        seen = self._checked.get(name)
        if seen is not None and now - seen < CHECK_SECONDS:
            return True
        if not self.store.exists(name):
            self._checked.pop(name, None)
            return False
        self._remember(self._checked, name, now)
        return True

    def url(self, name: str) -> str:
        """A presigned URL of the image with at least PRESIGNED_SECONDS - REUSE_SECONDS left."""
        now = self.clock()
        known = self._urls.get(name)
        if known is not None and now - known[1] < REUSE_SECONDS:
            return known[0]
        url = self.store.url_for(name, PRESIGNED_SECONDS)
        self._remember(self._urls, name, (url, now))
        return url

    def hit(self, name: str, hot: Hot) -> bytes | str | None:
        """A prompt-URL hit: the image's bytes, its presigned URL (redirect mode), or None
        (gone, or the bucket not answering: the Flask path answers with the reason)."""
        try:
            if not self.present(name):
                return None
            if self.redirect:
                return self.url(name)
            data = hot.get(name)
            if data is None:
                data = self.store.read(name)
                hot.put(name, data)
            return data
        except (StorageError, ImageMissing):
            self._checked.pop(name, None)
            return None

    def response(self, name: str, headers: dict[str, str], *, cacheable: bool) -> Response:
        """The Flask answer for a stored image: a redirect, or its bytes as S3 sends them."""
        if self.redirect:
            cache = f"public, max-age={REDIRECT_MAX_AGE}" if cacheable else "no-store"
            return Response(status=302, headers={**headers, "Location": self.url(name),
                                                 "Cache-Control": cache})
        if request.range is not None:  # a part: the whole (small) image, cut by Werkzeug
            data = self.store.read(name)
            whole = Response(data, mimetype="image/png", headers=headers)
            whole.make_conditional(request, accept_ranges=True, complete_length=len(data))
            return whole
        size, chunks = self.store.stream(name)
        return Response(_closing(chunks), mimetype="image/png",
                        headers={**headers, "Content-Length": str(size)})

    def _remember(self, table: dict[str, V], name: str, value: V) -> None:
        with self._lock:
            if len(table) >= MAX_REMEMBERED:
                table.clear()
            table[name] = value


def redirect_headers(name: str, url: str) -> list[tuple[str, str]]:
    """Headers of a prompt-URL hit answered with a redirect to the bucket (bots.web.hits)."""
    return [("Location", url), ("Cache-Control", f"public, max-age={REDIRECT_MAX_AGE}"),
            ("X-Imagine-Image", name), ("Content-Length", "0")]


def _closing(chunks: Iterator[bytes]) -> Iterator[bytes]:
    # A generator, so Werkzeug closes it (and the S3 body with it) if the client leaves.
    yield from chunks
