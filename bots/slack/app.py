"""The Slack front end: a Bolt app whose listeners ack at once and hand the rest over.

Two ways in: HTTP mode at POST /slack/events on the Flask app (`mount_slack`), and Socket
Mode for `imagine slack` (`run_socket_mode`). Both build the same App with the listeners of
`bots.slack.listeners`.
Listeners ack first; the status message and the submit (a few Redis calls) run after the
ack on Bolt's listener executor, which is sized so that slow Slack calls never delay acks.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

from flask import Flask, request
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bots.limits import Limits
from bots.slack.client import AUTH_ERRORS, check_token, error_code, web_client
from bots.slack.intake import SlackIntake
from bots.slack.jobs import SlackJobs
from bots.slack.listeners import register
from bots.slack.locale import ContextExecutor, SlackLocales, language_middleware
from settings import Settings
from tasks.core.queue import JobQueue

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)

# apps.connections.open answers these when SLACK_APP_TOKEN is not a usable app-level token.
APP_TOKEN_ERRORS = AUTH_ERRORS | {"not_allowed_token_type", "invalid_token", "forbidden_team"}
RECONNECT_BACKOFF_MAX = 60.0


def create_slack_app(settings: Settings, queue: JobQueue, *, socket_mode: bool = False,
                     client: WebClient | None = None) -> App:
    """A Bolt App with the listeners registered; auth.test failures are logged, not raised."""
    client = client or web_client(settings, retry_rate_limits=True)
    token = check_token(client, "slack")
    signing_secret = settings.slack_signing_secret
    app = App(
        client=client,
        signing_secret=None if socket_mode or signing_secret is None
        else signing_secret.get_secret_value(),
        request_verification_enabled=not socket_mode,
        # With a rejected token Bolt would raise here; the web app must keep serving the
        # rest, so Bolt checks again (and answers with its error) on the first request.
        token_verification_enabled=token.ok,
        process_before_response=False,
        # Listeners post to Slack after acking; enough threads that acks never queue. Each
        # runs in its request's context: the user's language (bots.slack.locale).
        listener_executor=ContextExecutor(max_workers=max(8, settings.web_threads),
                                          thread_name_prefix="slack-listener"),
        logger=logging.getLogger("imagine.slack"),
    )
    app.use(language_middleware(SlackLocales(client, queue.redis)))
    limits = Limits.from_settings(settings)
    jobs = SlackJobs(settings, queue, client)
    intake = SlackIntake(settings, jobs, limits)
    register(app, jobs, intake, limits)
    intake.start_sweeping()  # image prompts a stopped front end acked but never queued
    return app


def mount_slack(flask_app: Flask, settings: Settings, queue: JobQueue) -> App:
    """Serve Slack's commands, events and interactivity at POST /slack/events."""
    from slack_bolt.adapter.flask import SlackRequestHandler  # noqa: PLC0415

    bolt = create_slack_app(settings, queue)
    handler = SlackRequestHandler(bolt)

    def slack_events():  # type: ignore[no-untyped-def]
        """Slack's requests (signed with SLACK_SIGNING_SECRET); 401 when the signature is bad."""
        return handler.handle(request)

    flask_app.add_url_rule("/slack/events", "slack_events", slack_events, methods=["POST"])
    return bolt


def run_socket_mode(settings: Settings) -> int:
    """`imagine slack`: connect with SLACK_APP_TOKEN and serve until SIGINT/SIGTERM."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler  # noqa: PLC0415

    from tasks.core.connection import redis_client  # noqa: PLC0415
    from tasks.worker.celery_app import create_celery  # noqa: PLC0415

    if settings.slack_app_token is None or settings.slack_bot_token is None:
        log.error("imagine slack needs SLACK_APP_TOKEN (xapp-…, Socket Mode) and "
                  "SLACK_BOT_TOKEN (xoxb-…); for HTTP mode set SLACK_SIGNING_SECRET and run "
                  "imagine web instead")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    client = web_client(settings, retry_rate_limits=True)
    if check_token(client, "imagine slack").rejected:
        # Restarting cannot fix a rejected token: wait for the operator instead of looping.
        log.error("imagine slack: not connecting; fix SLACK_BOT_TOKEN and restart")
        stop.wait()
        return 0
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    app = create_slack_app(settings, queue, socket_mode=True, client=client)
    handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
    if connect_socket_mode(handler, stop) and handler.client.is_connected():
        log.info("imagine slack: connected in Socket Mode")
    stop.wait()
    handler.close()
    return 0


def connect_socket_mode(handler: SocketModeHandler, stop: threading.Event) -> bool:
    """Ask Slack for a connection URL and connect, retrying while Slack is unreachable.

    False when Slack refuses the app token. A WebSocket that fails after that, Slack's
    `disconnect` messages and dropped connections are retried by the SDK's own monitor.
    """
    delay = 1.0
    while not stop.is_set():
        try:
            handler.connect()
            return True
        except SlackApiError as exc:
            code = error_code(exc)
            if code in APP_TOKEN_ERRORS:
                # Restarting cannot fix this either: say what to do, then wait.
                log.error("imagine slack: Slack rejected SLACK_APP_TOKEN (%s). Create an "
                          "app-level token with the connections:write scope (app settings → "
                          "Basic Information → App-Level Tokens), set SLACK_APP_TOKEN to it "
                          "(xapp-…), enable Socket Mode, and restart", code)
                return False
            log.warning("imagine slack: Slack refused the connection (%s); retrying in %.0f s",
                        code or exc.response.status_code, delay)
        except (SlackClientError, OSError) as exc:
            log.warning("imagine slack: could not connect to Slack (%s); retrying in %.0f s",
                        exc, delay)
        stop.wait(delay)
        delay = min(delay * 2, RECONNECT_BACKOFF_MAX)
    return False
