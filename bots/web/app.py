"""The Flask application factory: one app for prompt URLs, the REST API, Slack and health."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, request
from kombu.exceptions import OperationalError
from werkzeug.exceptions import HTTPException, ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

from bots.limits import Limits
from bots.web import api, guards, images, models_api, ops, page, page_sign, previews_api, recall_api, region
from bots.web.audit_api import bp as audit_bp
from bots.web.cache import PromptCache
from bots.web.hits import HitPath
from bots.web.language import install as speak_request_language
from bots.web.ratelimit import RateLimiter
from bots.web.state import EXTENSION, WebState, web_state
from settings import Settings
from settings.i18n import _
from tasks.core.connection import redis_client
from tasks.core.queue import JobQueue
from tasks.core.storage import StorageError, open_storage
from tasks.worker.celery_app import create_celery

log = logging.getLogger(__name__)

# Redis (or the broker on it) down or restarting: a 503 to retry, never a 500 or a traceback.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError)
OUTAGE_RETRY_AFTER = 5


def create_app(settings: Settings) -> Flask:
    """The web app for `settings`: prompt URLs, the REST API, health, metrics, and Slack's
    HTTP endpoint when SLACK_SIGNING_SECRET is set."""
    app = Flask("imagine")
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    state = app.extensions[EXTENSION] = WebState(
        settings=settings,
        queue=queue,
        storage=open_storage(settings),
        limits=Limits.from_settings(settings),
        cache=PromptCache(queue.redis, pending_ttl=settings.job_ttl),
        limiter=RateLimiter(queue.redis, settings.rate_limit_per_minute),
    )
    if settings.trust_forwarded_for:
        # One proxy in front: its X-Forwarded-For entry is the client; earlier ones could
        # be forged by the client itself.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    # Outermost: a memoised prompt-URL hit needs neither the proxy fix nor Flask.
    app.wsgi_app = HitPath(app.wsgi_app, state)  # type: ignore[method-assign]
    # Sizes first, before any view (or Slack's handler) reads the body.
    app.before_request(lambda: guards.check_request(web_state().settings))
    speak_request_language(app)  # Accept-Language: cards and JSON errors
    for blueprint in (images.bp, api.bp, recall_api.bp, models_api.bp, ops.bp, region.bp,
                      previews_api.bp, page.bp, page_sign.bp, audit_bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, http_error)
    for error in UNREACHABLE:
        app.register_error_handler(error, unreachable)
    app.register_error_handler(StorageError, storage_failed)
    if settings.slack_signing_secret and settings.slack_bot_token is None:
        # Slack alone cannot work; prompt URLs and the API still do.
        log.error("Slack is not served: SLACK_SIGNING_SECRET is set but SLACK_BOT_TOKEN is "
                  "not; set the bot token (xoxb-…) to answer Slack at /slack/events")
    elif settings.slack_signing_secret:
        from bots.slack.app import mount_slack  # noqa: PLC0415 - slack-bolt only when configured

        mount_slack(app, settings, queue)
    return app


def unreachable(exc: Exception) -> Response:
    """Redis did not answer: 503 with Retry-After; the log has the details, the body none."""
    log.warning("%s %s: Redis is unreachable (%s)", request.method, request.path, exc)
    response = http_error(ServiceUnavailable(
        _("The queue's database is unreachable (restarting?); try again in a few seconds.")))
    response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER)
    response.headers["Cache-Control"] = "no-store"
    return response


def storage_failed(exc: StorageError) -> Response:
    """The image bucket failed (down, or refusing us): 503 with what the operator must fix."""
    log.warning("%s %s: %s", request.method, request.path, exc.message)
    response = http_error(ServiceUnavailable(
        _("The image storage is not answering; try again in a few seconds.")))
    response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER)
    response.headers["Cache-Control"] = "no-store"
    return response


def http_error(exc: HTTPException) -> Response:
    """JSON for the API; the PNG card (or JSON) on prompt URLs; short text elsewhere
    (Flask's default is an HTML page)."""
    code, message = exc.code or 500, exc.description or exc.name
    if request.path.startswith("/api/"):
        return api.error_response(code, message)
    if request.path == "/":
        return images.refusal(code, message)
    return Response(f"{code} {exc.name}: {message}\n", code, mimetype="text/plain")
