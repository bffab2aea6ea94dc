"""A local HTTP endpoint that records webhook deliveries and answers as scripted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class WebhookReceiver:
    # Status codes to answer result posts in order (then 200 for ever), e.g. [429, 429] for
    # two rate limits; progress posts always get 200.
    script: list[int] = field(default_factory=list)
    retry_after: str = "1"
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict[str, Any], headers: dict[str, str]) -> int:
        with self.lock:
            scripted = body.get("event") == "result" and self.script
            status = self.script.pop(0) if scripted else 200
            self.requests.append({"status": status, "body": body, "headers": headers})
            return status

    def accepted(self, event: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.requests
                    if r["status"] == 200 and (event is None or r["body"].get("event") == event)]

    def attempts(self, event: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["body"].get("event") == event]


@contextmanager
def webhook_receiver(script: list[int] | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(script=list(script or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            status = receiver.answer(body, dict(self.headers))
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", receiver.retry_after)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}' if status == 200 else b'{"ok": false}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
