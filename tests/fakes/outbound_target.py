"""A local HTTP(S) server on 127.0.0.1 that records every request reaching it and misbehaves
on request, for the outbound rules' tests: redirects, trickled headers and bodies, huge
replies, slow answers, any status with any Retry-After.

Paths: /ok, /redirect?to=URL, /trickle-headers, /trickle-body, /huge, /huge-declared,
/slow?seconds=S, /status/NNN?retry_after=V.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TRICKLE_INTERVAL = 0.2
HUGE = 200 * 1024 * 1024


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    url: str = ""
    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    sent: int = 0  # bytes of bodies written by /huge
    lock: threading.Lock = field(default_factory=threading.Lock)
    sni: list[str | None] = field(default_factory=list)

    def record(self, hit: Hit) -> None:
        with self.lock:
            self.hits.append(hit)
            self.active += 1
            self.most_active = max(self.most_active, self.active)

    def done(self) -> None:
        with self.lock:
            self.active -= 1


def _handler(target: Target) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        counted = False

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve()

        def do_POST(self) -> None:  # noqa: N802
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            target.record(Hit(self.command, self.path, dict(self.headers), body))
            self.counted = True
            try:
                self._answer(urlsplit(self.path))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                pass  # the client hung up, as it should have
            finally:
                self._release()

        def _release(self) -> None:
            # Before the reply goes out: the client may send its next request as soon as it
            # has read this one, before this thread gets to run again.
            if self.counted:
                self.counted = False
                target.done()

        def _answer(self, url: Any) -> None:
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            if url.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", query["to"])
                self.end_headers()
            elif url.path == "/trickle-headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self._trickle(b"X-Slow: " + b"a" * 1000)
            elif url.path == "/trickle-body":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self._trickle(b"b" * 1000)
            elif url.path in ("/huge", "/huge-declared"):
                self._huge(declared=url.path == "/huge-declared")
            elif url.path == "/slow":
                time.sleep(float(query.get("seconds", "1")))
                self._reply(200, b'{"ok": true}')
            elif url.path.startswith("/status/"):
                extra = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
                self._reply(int(url.path.rsplit("/", 1)[1]), b'{"ok": false}', extra)
            else:
                self._reply(200, b'{"ok": true}')

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None
                   ) -> None:
            self._release()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _trickle(self, data: bytes) -> None:
            for index in range(len(data)):
                self.wfile.write(data[index:index + 1])
                self.wfile.flush()
                time.sleep(TRICKLE_INTERVAL)

        def _huge(self, *, declared: bool) -> None:
            self.send_response(200)
            if declared:
                self.send_header("Content-Length", str(HUGE))
            self.end_headers()
            chunk = b"x" * (64 * 1024)
            while target.sent < HUGE:
                self.wfile.write(chunk)
                target.sent += len(chunk)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def outbound_target(tls: ssl.SSLContext | None = None) -> Iterator[Target]:
    """A running target; with `tls` it speaks HTTPS and records the SNI names it is sent."""
    target = Target()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(target))
    server.daemon_threads = True
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: target.sni.append(name)  # type: ignore[assignment]
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    target.port = server.server_address[1]
    target.url = f"{'https' if tls else 'http'}://127.0.0.1:{target.port}"
    thread = threading.Thread(target=server.serve_forever, name="outbound-target", daemon=True)
    thread.start()
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()
