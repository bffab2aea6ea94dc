"""Serving the Flask app with a production WSGI server (waitress), not Flask's dev server."""

from __future__ import annotations

import gc
import logging
from typing import Any

import waitress
import waitress.server

from bots.web import guards
from bots.web.app import create_app
from settings import Settings

log = logging.getLogger(__name__)

WAITRESS_HEADER_BYTES = 262_144  # waitress' own default for the request line and headers
HEADER_ROOM = 65_536  # other headers besides the longest allowed request line


def server_options(settings: Settings) -> dict[str, Any]:
    """Waitress' limits from ours: no body larger than the largest route takes (waitress
    answers 413 on the Content-Length alone; the app then applies each route's own limit),
    and room for the longest allowed query string (the app answers 414 beyond it)."""
    return {
        "threads": settings.web_threads,
        "ident": "imagine",
        # Prompt URL misses hold a thread while they wait (bounded in web_images, so hits
        # keep flowing); the connection must outlive the longest allowed wait.
        "channel_timeout": max(120, int(settings.max_wait) + 30),
        # waitress refuses a body of this size or more.
        "max_request_body_size": guards.largest_body(settings) + 1,
        "max_request_header_size": max(WAITRESS_HEADER_BYTES,
                                       guards.query_limit(settings) + HEADER_ROOM),
    }


def create_server(settings: Settings, port: int | None = None) -> Any:
    """The waitress server for the app (not yet serving); `port=0` picks a free one."""
    return waitress.server.create_server(
        create_app(settings), host=settings.web_host,
        port=settings.web_port if port is None else port, **server_options(settings))


def serve(settings: Settings) -> None:
    server = create_server(settings)
    log.info("serving on http://%s:%s with %s threads", settings.web_host, settings.web_port,
             settings.web_threads)
    # Everything imported so far lives as long as the process: out of the collector's sight,
    # a full collection no longer walks ~80,000 objects in the middle of a cache hit (p99).
    gc.freeze()
    server.run()
