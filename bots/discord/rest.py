"""A small synchronous client for Discord's REST API, for the deliver worker (no gateway).

It only sends requests and turns Discord's answers into the delivery layer's errors: 429 →
RateLimited(retry_after), 5xx and network trouble → TransientDeliveryError, other 4xx →
DiscordApiError (permanent, with Discord's JSON error code for callers that can recover).
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import redis

from tasks.core.delivery import (
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
    retry_after_seconds,
)
from tasks.names import DISCORD_WAIT_KEY

DEFAULT_API_URL = "https://discord.com/api/v10"
TIMEOUT = 60
USER_AGENT = "DiscordBot (https://github.com/imagine, 0.1) imagine-deliver"

# Discord's JSON error codes that mean "that message or token is gone", not "you are wrong".
UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
INVALID_WEBHOOK_TOKEN = 50027


class DiscordApiError(PermanentDeliveryError):
    """Discord refused the request (4xx other than 429)."""

    def __init__(self, status: int, code: int, message: str, route: str) -> None:
        super().__init__(f"Discord answered {status} ({code}: {message}) to {route}")
        self.status = status
        self.code = code

    @property
    def gone(self) -> bool:
        """The target no longer exists or the interaction token expired."""
        return self.status == 404 or self.code in (
            UNKNOWN_MESSAGE, UNKNOWN_WEBHOOK, UNKNOWN_INTERACTION, INVALID_WEBHOOK_TOKEN)


class DiscordRateLimited(RateLimited):
    """A 429; `is_global` when it holds for every route of this bot."""

    def __init__(self, retry_after: float, detail: str, *, is_global: bool) -> None:
        super().__init__(retry_after, detail)
        self.is_global = is_global


@dataclass(frozen=True)
class UploadFile:
    filename: str
    data: bytes
    content_type: str


_MAJOR = re.compile(r"^/(channels|guilds)/(\d+)|^/webhooks/(\d+)/([^/?]+)|^/interactions/(\d+)")


def major_route(path: str) -> str:
    """Discord's rate-limit buckets follow the route's major parameter (channel, webhook)."""
    match = _MAJOR.match(path)
    if match is None:
        return path.split("?")[0]
    return ":".join(part for part in match.groups() if part)


class SharedWaits:
    """A 429's retry_after, kept in Redis so every deliver thread and process honours it,
    not only the task that was told (a duplicate delivery would otherwise post early)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def check(self, *buckets: str) -> None:
        for bucket in buckets:
            left = self.redis.pttl(DISCORD_WAIT_KEY.format(bucket))
            if isinstance(left, int) and left > 0:
                raise RateLimited(left / 1000, f"by Discord on {bucket} (shared wait)")

    def record(self, bucket: str, seconds: float) -> None:
        self.redis.set(DISCORD_WAIT_KEY.format(bucket), "1", px=max(1, int(seconds * 1000)))


class DiscordRest:
    def __init__(self, base_url: str | None, token: str | None, timeout: float = TIMEOUT,
                 waits: SharedWaits | None = None) -> None:
        self.base_url = (base_url or DEFAULT_API_URL).rstrip("/")
        self.token = token
        self.timeout = timeout
        self.waits = waits

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                files: list[UploadFile] | None = None, *, auth: bool = True) -> Any:
        """One API call; JSON in, JSON out (None for 204). Files make it multipart."""
        headers = {"User-Agent": USER_AGENT}
        if auth:
            if not self.token:
                raise PermanentDeliveryError(
                    "DISCORD_TOKEN is not set in the deliver worker's environment")
            headers["Authorization"] = f"Bot {self.token}"
        data: bytes | None = None
        if files:
            data, content_type = _multipart(body or {}, files)
            headers["Content-Type"] = content_type
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        route = f"{method} {path.split('?')[0]}"
        bucket = major_route(path)
        if self.waits is not None:
            self.waits.check("global", bucket)
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            error = _error(exc, route)
            if isinstance(error, RateLimited) and self.waits is not None:
                is_global = isinstance(error, DiscordRateLimited) and error.is_global
                self.waits.record("global" if is_global else bucket, error.retry_after)
            raise error from None
        except (OSError, http.client.HTTPException) as exc:  # resets, timeouts, cut replies
            raise TransientDeliveryError(f"Discord unreachable for {route}: {exc}") from None
        return json.loads(raw) if raw else None


def _error(exc: urllib.error.HTTPError, route: str) -> Exception:
    try:
        payload = json.loads(exc.read() or b"{}")
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    if exc.code == 429:
        # The body's retry_after has sub-second precision; the header is rounded up.
        retry_after = payload.get("retry_after")
        seconds = (float(retry_after) if isinstance(retry_after, (int, float))
                   else retry_after_seconds(exc.headers.get("Retry-After")))
        return DiscordRateLimited(seconds, f"by Discord on {route}",
                                  is_global=bool(payload.get("global")))
    if exc.code >= 500:
        return TransientDeliveryError(f"Discord answered {exc.code} to {route}")
    return DiscordApiError(exc.code, int(payload.get("code") or 0),
                           str(payload.get("message") or exc.reason), route)


def _multipart(body: dict[str, Any], files: list[UploadFile]) -> tuple[bytes, str]:
    """Discord's upload form: `payload_json` plus `files[i]` parts."""
    boundary = f"imagine-{secrets.token_hex(16)}"
    parts = [
        (f'--{boundary}\r\nContent-Disposition: form-data; name="payload_json"\r\n'
         f"Content-Type: application/json\r\n\r\n").encode() + json.dumps(body).encode()
    ]
    for index, upload in enumerate(files):
        filename = upload.filename.replace('"', "")
        parts.append(
            (f'--{boundary}\r\nContent-Disposition: form-data; name="files[{index}]"; '
             f'filename="{filename}"\r\nContent-Type: {upload.content_type}\r\n\r\n').encode()
            + upload.data)
    data = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return data, f"multipart/form-data; boundary={boundary}"
