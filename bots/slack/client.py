"""Slack Web API clients configured from settings, and Slack's errors in delivery's terms."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from settings import Settings
from tasks.core.delivery import (
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors retrying cannot fix: the token or the app's installation is wrong.
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked",
                         "token_expired", "no_permission", "missing_scope", "org_login_required",
                         "team_access_not_granted", "ekm_access_denied"})
# The bot cannot reach the conversation: the requester must invite it.
CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived",
                            "restricted_action"})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable",
                              "request_timeout", "ratelimited"})
TIMEOUT = 30


class ChannelUnreachable(PermanentDeliveryError):
    """Slack refused the channel (not_in_channel, channel_not_found): tell the requester."""

    def __init__(self, error: str) -> None:
        super().__init__(f"Slack answered {error}")
        self.error = error


def api_base_url(settings: Settings) -> str:
    # WebClient joins method names onto base_url verbatim: the trailing slash is required.
    url = settings.slack_api_url
    return url if url.endswith("/") else url + "/"


def bot_token(settings: Settings) -> str:
    if settings.slack_bot_token is None:
        raise PermanentDeliveryError("SLACK_BOT_TOKEN is not set")
    return settings.slack_bot_token.get_secret_value()


def web_client(settings: Settings, *, retry_rate_limits: bool = False) -> WebClient:
    """A WebClient for SLACK_API_URL; front ends retry rate limits inline, workers do not.

    The deliver worker turns `ratelimited` into a Celery retry instead, so a worker thread
    never sleeps on Slack and a retried step is still done only once.
    """
    handlers: list[Any] = [ConnectionErrorRetryHandler()]
    if retry_rate_limits:
        handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    return WebClient(token=bot_token(settings), base_url=api_base_url(settings),
                     timeout=TIMEOUT, retry_handlers=handlers)


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if key.lower() == name.lower():
            return str(value[0] if isinstance(value, list) else value)
    return None


def error_code(exc: SlackApiError) -> str:
    return str(exc.response.get("error", "") or "")


def translate(exc: SlackClientError) -> Exception:
    """Slack's error as one of delivery's: retry later, retry after, or give up."""
    if not isinstance(exc, SlackApiError):
        # A failed upload to the upload URL, a broken connection: try again later.
        return TransientDeliveryError(f"Slack request failed: {exc}")
    error = error_code(exc)
    status = exc.response.status_code
    if status == 429 or error == "ratelimited":
        seconds = retry_after_seconds(_header(exc.response.headers, "Retry-After"), default=1.0)
        return RateLimited(seconds, f"by Slack ({exc.response.api_url})")
    if error in AUTH_ERRORS:
        return PermanentDeliveryError(
            f"Slack rejected SLACK_BOT_TOKEN ({error}): install the app again or fix the token")
    if error in CHANNEL_ERRORS:
        return ChannelUnreachable(error)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return TransientDeliveryError(f"Slack answered {status} {error}")
    return PermanentDeliveryError(f"Slack answered {error or status}")


@contextmanager
def delivery_errors() -> Iterator[None]:
    """Run Slack calls; raise their failures as RateLimited/Transient/PermanentDeliveryError."""
    try:
        yield
    except SlackClientError as exc:
        raise translate(exc) from None


def call(action: Callable[[], T]) -> T:
    with delivery_errors():
        return action()


@dataclass(frozen=True)
class TokenCheck:
    """The result of auth.test at start-up."""

    identity: dict[str, Any] | None
    rejected: bool = False  # Slack said the token is wrong (not merely unreachable)

    @property
    def ok(self) -> bool:
        return self.identity is not None


def check_token(client: WebClient, who: str) -> TokenCheck:
    """auth.test at start-up: the bot's identity, or one clear log line saying what is wrong."""
    try:
        response = client.auth_test()
    except SlackApiError as exc:
        log.error("%s: Slack rejected SLACK_BOT_TOKEN (%s). Reinstall the app to the workspace "
                  "and set SLACK_BOT_TOKEN to its Bot User OAuth Token (xoxb-…).",
                  who, error_code(exc) or exc.response.status_code)
        return TokenCheck(None, rejected=True)
    except (SlackClientError, OSError) as exc:
        log.warning("%s: could not reach Slack at %s to check the token (%s); will try again "
                    "on the first request", who, client.base_url, exc)
        return TokenCheck(None)
    data = dict(response.data) if isinstance(response.data, dict) else {}
    log.info("%s: connected to Slack as %s (team %s)", who, data.get("user"), data.get("team"))
    return TokenCheck(data)
