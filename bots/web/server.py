"""Serving the Flask app with a production WSGI server (waitress), not Flask's dev server."""

from __future__ import annotations

import logging

import waitress

from bots.web.app import create_app
from settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    app = create_app(settings)
    log.info("serving on http://%s:%s with %s threads", settings.web_host, settings.web_port,
             settings.web_threads)
    # Prompt URL misses hold a thread while they wait (bounded in web_images, so hits keep
    # flowing); the connection must outlive the longest allowed wait.
    waitress.serve(app, host=settings.web_host, port=settings.web_port,
                   threads=settings.web_threads, ident="imagine",
                   channel_timeout=max(120, int(settings.max_wait) + 30))
