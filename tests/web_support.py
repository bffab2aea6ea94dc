"""Serving `create_app` in this process over real HTTP, for web tests that need no worker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from bots.web.app import create_app
from settings import Settings

__all__ = ["serve_app_fixture", "with_settings"]


def with_settings(settings: Settings, **overrides: Any) -> Settings:
    """A validated copy (model_copy would keep a str where a SecretStr belongs)."""
    return Settings(_env_file=None, **{**settings.model_dump(), **overrides})  # type: ignore[call-arg]


@pytest.fixture(name="serve_app")
def serve_app_fixture(settings: Settings) -> Iterator[Callable[..., str]]:
    """`serve_app(**setting_overrides)` → base URL of a live app on a free loopback port."""
    servers: list[BaseWSGIServer] = []

    def start(**overrides: Any) -> str:
        app = create_app(with_settings(settings, **overrides))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, name="web-test", daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
