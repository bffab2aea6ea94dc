"""A small synchronous client for Discord's REST API, for the deliver worker (no gateway).

It only sends requests and turns Discord's answers into the delivery layer's errors: 429 →
RateLimited(retry_after), 5xx and network trouble → TransientDeliveryError, other 4xx →
DiscordApiError (permanent, with Discord's JSON error code for callers that can recover).
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tasks.delivery import PermanentDeliveryError, RateLimited, TransientDeliveryError
from tasks.webhook_delivery import retry_after_seconds

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


@dataclass(frozen=True)
class UploadFile:
    filename: str
    data: bytes
    content_type: str


class DiscordRest:
    def __init__(self, base_url: str | None, token: str | None, timeout: float = TIMEOUT) -> None:
        self.base_url = (base_url or DEFAULT_API_URL).rstrip("/")
        self.token = token
        self.timeout = timeout

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
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _error(exc, route) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
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
        return RateLimited(seconds, f"by Discord on {route}")
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
