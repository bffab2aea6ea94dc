"""Requests to URLs that users give (webhooks; image URLs next): one way out, with its rules.

An address a user types must not make the server reach what only the server can reach:
Redis on 127.0.0.1:6379, a cloud's metadata service on 169.254.169.254, a page on the LAN.
So every such request here
  * is `http` or `https`, with no user name or password in the URL (they would be stored in
    the job record and logged; a token belongs in the path or query);
  * resolves the host once and keeps only public addresses (IPv4 and IPv6, an IPv4 address
    inside IPv6 — mapped, 6to4, NAT64 — judged as that IPv4 address), then connects to an
    address it checked: no second lookup that a rebinding DNS server could answer
    differently. The Host header, TLS SNI and the certificate check still use the name;
  * follows redirects only when the caller asks (GET and HEAD), at most `max_redirects`,
    each hop checked like the first;
  * finishes within one deadline for the whole exchange — lookup, connect, TLS, headers,
    body, redirects — so a server trickling a byte every half second is cut off, and reads
    at most `max_bytes` of a body.
IMAGINE_OUTBOUND_ALLOW (host names or networks) opens chosen internal targets on purpose.
Proxy variables (HTTP_PROXY) are not used: a proxy would look the name up again.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urljoin, urlsplit

from settings import Settings
from settings.i18n import N_, _
from tasks.core.addresses import ALLOW_HINT, Allowlist, refusal_reason
from tasks.errors import (
    OutboundError,
    OutboundRefused,
    OutboundTimeout,
    OutboundTooLarge,
    OutboundUnreachable,
)

Resolver = Callable[[str, int], Sequence[str]]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses as the system resolver gives them, in its order, once each."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class OutboundPolicy:
    """The rules of one kind of request; `resolver` and `ssl_context` are for tests."""

    allow: tuple[str, ...] = ()
    timeout: float = 10.0
    max_bytes: int = 1024 * 1024
    max_redirects: int = 3
    resolver: Resolver = system_resolver
    ssl_context: ssl.SSLContext | None = None
    allowlist: Allowlist = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowlist", Allowlist.parse(self.allow))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> OutboundPolicy:
        values: dict[str, Any] = {"allow": settings.outbound_allow,
                                  "timeout": settings.outbound_timeout,
                                  "max_bytes": settings.outbound_max_bytes}
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class Target:
    """A URL that passed the rules, with the addresses a connection may use."""

    url: str
    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int
    path: str  # path and query, at least "/"
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage  # case-insensitive .get()
    body: bytes
    url: str


class _Deadline:
    """One deadline for a whole exchange. Socket timeouts bound each wait; a timer shuts the
    exchange's sockets down when the time is up, so a byte trickled before each timeout
    cannot stretch the exchange."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def left(self, what: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            raise self.error(what)
        return left

    def error(self, what: str) -> OutboundTimeout:
        return OutboundTimeout(_("{what} did not answer within {seconds:g} s "
                                 "(IMAGINE_OUTBOUND_TIMEOUT)").format(
                                   what=what, seconds=self.seconds))

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self._timer is None:
                self._timer = threading.Timer(max(0.0, self.end - time.monotonic()),
                                              self._expire)
                self._timer.daemon = True
                self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            try:  # the plain socket's shutdown, also under TLS: wakes any blocked read
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()


def check_url(url: str, policy: OutboundPolicy, what: str = N_("URL")) -> Target:
    """Parse, resolve and check `url` without sending anything (e.g. when a job is submitted);
    raises OutboundRefused, or OutboundUnreachable/OutboundTimeout when the name does not
    resolve in time."""
    deadline = _Deadline(policy.timeout)
    what = _(what)  # what the messages call the URL ("webhook"), in the caller's language
    try:
        return _target(url, policy, deadline, what)
    finally:
        deadline.cancel()


def request(method: str, url: str, *, policy: OutboundPolicy, what: str = N_("URL"),
            body: bytes | None = None, headers: Mapping[str, str] | None = None,
            max_bytes: int | None = None, follow_redirects: bool = False) -> Response:
    """Send one request under the rules and return the answer, whatever its status. Raises
    an OutboundError: refused (nothing sent), timeout, unreachable, or too large."""
    deadline = _Deadline(policy.timeout)
    what = _(what)  # what the messages call the URL ("webhook"), in the caller's language
    cap = policy.max_bytes if max_bytes is None else max_bytes
    follow = follow_redirects and method.upper() in ("GET", "HEAD")
    try:
        for hop in range(policy.max_redirects + 1):
            target = _target(url, policy, deadline,
                             what if hop == 0 else _("{what} redirect").format(what=what))
            response = _exchange(method, target, body, dict(headers or {}), policy, deadline,
                                 what, cap)
            location = response.headers.get("Location")
            if not (follow and response.status in REDIRECTS and location):
                return response
            url = urljoin(url, location)
        raise OutboundRefused(_("{what} redirected more than {most} times").format(
                                  what=what, most=policy.max_redirects))
    finally:
        deadline.cancel()


def _target(url: str, policy: OutboundPolicy, deadline: _Deadline, what: str) -> Target:
    scheme, host, port, path = _parse(url, what)
    addresses = _resolve(host, port, policy, deadline, what)
    allowed: list[str] = []
    refused: list[tuple[str, str]] = []
    for address in addresses:
        ip = ipaddress.ip_address(address)
        reason = refusal_reason(ip)
        if reason is None or policy.allowlist.allows(host, ip):
            allowed.append(address)
        else:
            refused.append((address, reason))
    if not allowed:
        address, reason = refused[0]
        of = "" if address == host else _(" (what {host} resolves to)").format(host=host)
        raise OutboundRefused(_("{what} address {address}{of} is {reason}; only public "
                                "addresses are allowed ({hint})").format(
                                  what=what, address=address, of=of, reason=_(reason),
                                  hint=_(ALLOW_HINT)))
    return Target(url, scheme, host, port, path, tuple(allowed))


def _parse(url: str, what: str) -> tuple[str, str, int, str]:
    if _UNSAFE_CHARACTERS.search(url):
        raise OutboundRefused(_("{what} URL must not contain spaces or control characters").format(
                                  what=what))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(_("{what} URL is not a valid URL ({exc})").format(
                                  what=what, exc=exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundRefused(_("{what} URL must start with http:// or https:// (got {value!r})").format(
                                  what=what, value=scheme + '://' if scheme else url[:40]))
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused(_("{what} URL must not contain a user name or password "
                                "(user:pass@host); put a token in its path or query instead").format(
                                  what=what))
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise OutboundRefused(_("{what} URL has no host name").format(what=what))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _resolve(host: str, port: int, policy: OutboundPolicy, deadline: _Deadline,
             what: str) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]  # a literal address: nothing to look up
    except ValueError:
        pass
    box: list[Any] = []

    def lookup() -> None:
        try:
            box.append(list(policy.resolver(host, port)))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
            box.append(exc)

    # getaddrinfo has no timeout of its own: wait for it only as long as the deadline allows.
    thread = threading.Thread(target=lookup, name="outbound-dns", daemon=True)
    thread.start()
    thread.join(deadline.left(what))
    if not box:
        raise deadline.error(what)
    result = box[0]
    if isinstance(result, OSError):
        reason = result.strerror or str(result)
        raise OutboundUnreachable(_("{what} host {host} does not resolve ({reason})").format(
                                      what=what, host=host, reason=reason))
    if isinstance(result, Exception):
        raise OutboundUnreachable(_("{what} host {host} could not be looked up ({result})").format(
                                      what=what, host=host, result=result))
    if not result:
        raise OutboundUnreachable(_("{what} host {host} has no address").format(
                                      what=what, host=host))
    return [str(address) for address in result]


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the target's name (Host header) over a socket to an address checked before."""

    def __init__(self, target: Target, deadline: _Deadline, what: str) -> None:
        super().__init__(target.host, target.port, timeout=deadline.left(what))
        self.target, self.deadline, self.what = target, deadline, what

    def connect(self) -> None:
        self.sock = _connect(self.target, self.deadline, self.what)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS the same way; SNI and the certificate check use the name, not the address."""

    def __init__(self, target: Target, deadline: _Deadline, what: str,
                 context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=deadline.left(what), context=context)
        self.target, self.deadline, self.what = target, deadline, what
        self.tls = context

    def connect(self) -> None:
        sock = _connect(self.target, self.deadline, self.what)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.target.host)
        self.deadline.watch(self.sock)


@cache
def _system_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _connect(target: Target, deadline: _Deadline, what: str) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers."""
    error: OSError = OSError(f"no address to connect to for {target.host}")
    for address in target.addresses:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address, target.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0]
        sock = socket.socket(family, kind, proto)
        deadline.watch(sock)
        try:
            sock.settimeout(deadline.left(what))
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def _exchange(method: str, target: Target, body: bytes | None, headers: dict[str, str],
              policy: OutboundPolicy, deadline: _Deadline, what: str, cap: int) -> Response:
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = PinnedHTTPSConnection(target, deadline, what,
                                           policy.ssl_context or _system_tls())
    else:
        connection = PinnedHTTPConnection(target, deadline, what)
    try:
        connection.request(method, target.path, body=body,
                           headers={"Connection": "close", **headers})
        reply = connection.getresponse()
        data = _read(reply, cap, deadline, what)
        return Response(reply.status, reply.headers, data, target.url)
    except OutboundError:
        raise
    except (OSError, http.client.HTTPException) as exc:
        raise _failure(exc, deadline, target, what) from None
    finally:
        connection.close()


def _read(reply: http.client.HTTPResponse, cap: int, deadline: _Deadline, what: str) -> bytes:
    too_large = OutboundTooLarge(_("{what} answered with more than {cap} bytes").format(
                                     what=what, cap=cap),
                                 status=reply.status, headers=reply.headers)
    length = reply.getheader("Content-Length", "")
    if length.isdigit() and int(length) > cap:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    while True:
        deadline.left(what)
        chunk = reply.read1(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > cap:
            raise too_large
        chunks.append(chunk)
    if deadline.expired:  # the timer shut the socket: what came is not the whole body
        raise deadline.error(what)
    return b"".join(chunks)


def _failure(exc: Exception, deadline: _Deadline, target: Target, what: str) -> OutboundError:
    where = f"{target.host}:{target.port}"
    if deadline.expired or isinstance(exc, TimeoutError):
        return deadline.error(what)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return OutboundUnreachable(_("{what} {where} has a TLS certificate that does not "
                                     "verify ({reason})").format(
                                       what=what, where=where,
                                       reason=exc.verify_message), retryable=False)
    if isinstance(exc, http.client.IncompleteRead):
        return OutboundUnreachable(_("{what} {where} closed the connection mid-reply").format(
                                       what=what, where=where))
    if isinstance(exc, http.client.InvalidURL):
        return OutboundRefused(_("{what} URL is not a valid URL ({exc})").format(
                                   what=what, exc=exc))
    return OutboundUnreachable(_("{what} {where} is unreachable ({exc})").format(
                                   what=what, where=where, exc=exc))
