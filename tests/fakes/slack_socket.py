"""Slack's Socket Mode side of the fake: the WebSocket that apps.connections.open hands out.

Shaped like https://api.slack.com/apis/socket-mode: when an app connects, the server sends
`hello`; it then pushes envelopes (`slash_commands`, `events_api`, `interactive`), each with
an `envelope_id`, and the app acknowledges each one by sending back
`{"envelope_id": …, "payload": …}` (the payload only when it answers, as a slash command's
ephemeral reply does). `disconnect` asks the app to open a new connection, which Slack does
every few hours and before a deploy. Runs aiohttp on its own thread and event loop.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.aio_server import ThreadedAioServer

APP_ID = "A0000APP"


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    at: float = field(default_factory=time.perf_counter)


class SocketModeServer:
    def __init__(self) -> None:
        self.url_base = ""
        self.hellos = 0  # connections greeted, reconnects included
        self.acks: dict[str, Ack] = {}
        self._open: list[web.WebSocketResponse] = []
        self._tickets: Iterator[int] = itertools.count(1)
        self._envelopes: Iterator[int] = itertools.count(1)
        self._changed = threading.Condition()
        self._server = ThreadedAioServer("fake-slack-socket")

    # --- what apps.connections.open answers -----------------------------------------------
    def new_url(self) -> str:
        """A fresh connection URL, as apps.connections.open returns one per call."""
        return f"{self.url_base}/link/?ticket={next(self._tickets)}&app_id={APP_ID}"

    # --- what a test does -----------------------------------------------------------------
    def wait_connected(self, hellos: int = 1, timeout: float = 60.0) -> None:
        """Block until `hellos` connections were greeted and one is open."""
        self._wait(lambda: self.hellos >= hellos and bool(self._open), timeout,
                   f"{hellos} Socket Mode connection(s)")

    def send(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0,
             retry_reason: str = "") -> str:
        """Push an envelope to the newest open connection; returns its envelope_id."""
        envelope_id = f"env-{next(self._envelopes)}-{time.time_ns()}"
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind in ("slash_commands", "interactive")}
        if kind == "events_api":
            envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason)
        self._server.call(self._send_newest(envelope))
        return envelope_id

    def ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        """The app's acknowledgement of an envelope (waits for it)."""
        return self._wait(lambda: self.acks.get(envelope_id), timeout, f"the ack of {envelope_id}")

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does before it rotates a connection."""
        self._server.call(self._send_newest({"type": "disconnect", "reason": reason,
                                             "debug_info": {"host": "fake-slack"}}))

    # --- the server -----------------------------------------------------------------------
    def start(self) -> SocketModeServer:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._server.start(app)
        self.url_base = f"ws://127.0.0.1:{self._server.port}"
        return self

    def stop(self) -> None:
        self._server.stop(self._open)

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)  # answers the client's pings with pongs
        await ws.prepare(request)
        await ws.send_str(json.dumps({
            "type": "hello", "num_connections": len(self._open) + 1,
            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
            "connection_info": {"app_id": request.query.get("app_id", APP_ID)}}))
        with self._changed:
            self._open.append(ws)
            self.hellos += 1
            self._changed.notify_all()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if "envelope_id" in data:
                    with self._changed:
                        self.acks[data["envelope_id"]] = Ack(data["envelope_id"],
                                                             data.get("payload"))
                        self._changed.notify_all()
        finally:
            with self._changed:
                self._open.remove(ws)
                self._changed.notify_all()
        return ws

    async def _send_newest(self, message: dict[str, Any]) -> None:
        if not self._open:
            raise RuntimeError("no app is connected over Socket Mode")
        await self._open[-1].send_str(json.dumps(message))

    def _wait(self, predicate: Any, timeout: float, what: str) -> Any:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            return predicate()
