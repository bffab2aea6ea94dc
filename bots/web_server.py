"""Serving the Flask app with a production WSGI server (waitress), not Flask's dev server."""

from __future__ import annotations

import waitress

from bots.web_app import create_app
from settings import Settings


def serve(settings: Settings) -> None:
    waitress.serve(create_app(settings), host=settings.web_host, port=settings.web_port,
                   threads=settings.web_threads, ident="imagine")
