"""The Slack user's language: Slack's `users.info` with `include_locale` (scope users:read)
says it ("zh-CN"), kept in Redis for a day per user, so one call a day per user, not one a
request.

`language_middleware` is a global Bolt middleware: it sets the language around the handling
of every request (command, event, button) before Bolt hands the listener to its executor;
`ContextExecutor` is that executor, which runs each listener in a copy of the submitting
thread's context (a plain thread pool would run it in whatever its thread last spoke). Jobs
record the language in their requester (bots/slack/jobs.py) for the workers.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from settings.i18n import set_locale
from tasks.names import SLACK_USER_KEY

log = logging.getLogger(__name__)

LOCALE_SECONDS = 24 * 3600  # a user rarely changes language; a day-old answer is fine
FAILED_SECONDS = 300  # Slack would not say (missing scope, outage): ask again later

P = ParamSpec("P")
T = TypeVar("T")


class ContextExecutor(ThreadPoolExecutor):
    """A thread pool whose tasks run in the submitter's context (its language)."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()
        return super().submit(lambda: context.run(fn, *args, **kwargs))


class SlackLocales:
    """Each Slack user's locale tag, cached in Redis (SLACK_USER_KEY)."""

    def __init__(self, client: WebClient, store: redis.Redis) -> None:
        self.client = client
        self.redis = store

    def of(self, user: str) -> str | None:
        """The user's Slack locale ("zh-CN"), None when unknown (English is spoken)."""
        if not user:
            return None
        key = SLACK_USER_KEY.format(user)
        try:
            cached = self.redis.get(key)
        except redis.RedisError:
            return None  # the job itself will say what is wrong with Redis
        if cached is not None:
            return str(json.loads(cached).get("locale") or "") or None
        locale, seconds = self._ask(user)
        try:
            self.redis.set(key, json.dumps({"locale": locale}), ex=seconds)
        except redis.RedisError:
            pass
        return locale or None

    def _ask(self, user: str) -> tuple[str, int]:
        try:
            answer = self.client.users_info(user=user, include_locale=True)
        except SlackApiError as exc:
            error = exc.response.get("error", "")
            hint = " (reinstall the app with the users:read scope)" if (
                error == "missing_scope") else ""
            log.warning("users.info (locale) for %s failed: %s%s", user, error, hint)
            return "", FAILED_SECONDS
        except (SlackClientError, OSError) as exc:
            log.warning("users.info (locale) for %s failed: %s", user, exc)
            return "", FAILED_SECONDS
        return str((answer.get("user") or {}).get("locale") or ""), LOCALE_SECONDS


def request_user(body: dict[str, Any]) -> str:
    """Who sent a Slack request: a command's user_id, an action's user, an event's user."""
    if body.get("user_id"):
        return str(body["user_id"])
    user = body.get("user")
    if isinstance(user, dict) and user.get("id"):
        return str(user["id"])
    event = body.get("event") or {}
    return str(event.get("user") or "") if isinstance(event, dict) else ""


def language_middleware(locales: SlackLocales) -> Callable[..., None]:
    """The global middleware: the rest of the request (and the listener Bolt submits to
    the ContextExecutor) in the sender's language. Set, not scoped: Bolt's next() only
    marks the chain to go on, the listeners run after this returns. Every request sets it
    again, and the web app resets it after each request (bots.web.language)."""

    def speak_the_users_language(body: dict[str, Any],
                                 next: Callable[[], None]) -> None:  # noqa: A002 - Bolt's name
        set_locale(locales.of(request_user(body)))
        next()

    return speak_the_users_language
