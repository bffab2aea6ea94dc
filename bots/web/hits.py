"""Prompt-URL cache hits answered in front of Flask: a memo lookup, a stat and a file send.

A hit whose image this process has already served (`Memo`) needs neither the grammar nor
Redis nor Flask's routing, request and response objects: measured, Flask's own per-request
work was most of a hit's cost. Everything else (misses, signatures still to check, Range
requests, over-long query strings, anything unusual) goes on to the Flask app unchanged, so
every refusal and every placeholder keeps its one code path in bots.web.images.

The bytes of recently served images are kept in memory (bounded in bytes): an image name is
its content hash, so a kept copy can never be stale. The file is still looked at (a stat)
on every hit, so an image removed from storage is drawn again as before.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.http import parse_etags

from bots.web.guards import query_limit
from bots.web.images import IMMUTABLE
from bots.web.query import memo_key
from bots.web.s3_images import redirect_headers
from bots.web.state import WebState
from tasks.core.storage import Storage

HOT_BYTES = 64 * 1024 * 1024  # ~200 generated 512 px PNGs
FILE_BLOCK = 256 * 1024
SERVED_METHODS = frozenset({"GET", "HEAD"})

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class HotFiles:
    """Image name → its bytes, least recently used dropped first, at most `max_bytes`."""

    def __init__(self, max_bytes: int = HOT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> bytes | None:
        return self._data.get(name)

    def put(self, name: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            if name in self._data:
                return
            while self._data and self.bytes + len(data) > self.max_bytes:
                _old, dropped = self._data.popitem(last=False)
                self.bytes -= len(dropped)
            self._data[name] = data
            self.bytes += len(data)

    def __len__(self) -> int:
        return len(self._data)


def query_args(query_string: str) -> dict[str, list[str]]:
    """The query parameters exactly as Werkzeug reads them (`request.args`), as lists."""
    # WSGI hands the query string as latin-1; Werkzeug re-encodes it the same way.
    text = query_string.encode("latin-1").decode()
    args: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"):
        args.setdefault(name, []).append(value)
    return args


class HitPath:
    """WSGI middleware: answers memoised prompt-URL hits itself, passes the rest to `app`."""

    def __init__(self, app: WsgiApp, state: WebState) -> None:
        self.app = app
        self.state = state
        self.hot = HotFiles()
        self.max_query = query_limit(state.settings)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        answer = self._hit(environ)
        if answer is None:
            return self.app(environ, start_response)
        status, headers, body = answer
        start_response(status, headers)
        wrapper = environ.get("wsgi.file_wrapper")
        if body and wrapper is not None:
            # Waitress sends a wrapped file in blocks straight from it: no copy of the whole
            # image into its output buffer per request (time, and memory in every thread).
            return wrapper(io.BytesIO(body[0]), FILE_BLOCK)  # type: ignore[no-any-return]
        return body

    def _hit(self, environ: dict[str, Any]
             ) -> tuple[str, list[tuple[str, str]], list[bytes]] | None:
        method = environ.get("REQUEST_METHOD")
        query = environ.get("QUERY_STRING", "")
        if (environ.get("PATH_INFO") != "/" or method not in SERVED_METHODS or not query
                or len(query) > self.max_query or "HTTP_RANGE" in environ):
            return None
        try:
            memo = memo_key(query_args(query))
        except (UnicodeError, ValueError):
            return None  # Flask answers it (or refuses it) as before
        name = self.state.memo.get(memo) if memo is not None else None
        if name is None:
            return None
        data = self._read(name)
        if data is None:
            return None  # removed from storage: the Flask path draws it again
        self.state.cache_counts.add("hit")
        self.state.served.note(name)
        headers = [("ETag", f'"{name}"'), ("Cache-Control", IMMUTABLE),
                   ("X-Imagine-Image", name)]
        matches = environ.get("HTTP_IF_NONE_MATCH")
        if matches and parse_etags(matches).contains(name):
            return "304 NOT MODIFIED", headers, []
        if isinstance(data, str):  # a presigned URL: the client fetches it from the bucket
            return "302 FOUND", redirect_headers(name, data), []
        headers += [("Content-Type", "image/png"), ("Content-Length", str(len(data))),
                    ("Accept-Ranges", "bytes")]
        return "200 OK", headers, [] if method == "HEAD" else [data]

    def _read(self, name: str) -> bytes | str | None:
        """The image's bytes (or, redirecting to a bucket, its URL), or None when it is gone."""
        storage = self.state.storage
        if not storage.is_valid_name(name):
            return None
        if not isinstance(storage, Storage):
            assert self.state.remote is not None
            return self.state.remote.hit(name, self.hot)
        path = storage.path(name)
        try:
            size = os.stat(path).st_size
        except OSError:
            return None
        data = self.hot.get(name)
        if data is None or len(data) != size:
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except OSError:
                return None
            self.hot.put(name, data)
        return data
