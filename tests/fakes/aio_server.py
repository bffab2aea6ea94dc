"""An aiohttp application served from a thread with its own event loop, for the fakes.

The fakes that speak WebSocket (Discord's gateway, Slack's Socket Mode) run on aiohttp; the
tests that drive them are synchronous, so the server lives on a thread of its own and tests
hand it coroutines with `call`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class ThreadedAioServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self, app: web.Application) -> None:
        """Serve `app` on a free loopback port (`self.port`) until `stop`."""
        ready = threading.Event()
        loop = self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve(app))
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")

    async def _serve(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coroutine` on the server's loop and return its result."""
        assert self._loop is not None, f"start() {self.name} first"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def stop(self, sockets: Sequence[web.WebSocketResponse] = ()) -> None:
        """Close the open WebSockets, then the server and its loop."""
        if self._loop is None:
            return

        async def shutdown() -> None:
            for ws in list(sockets):
                await ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        self.call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None
