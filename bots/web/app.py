"""The Flask application factory: one app for prompt URLs, the REST API, Slack and health."""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from bots.limits import Limits
from bots.web import api, images, ops
from bots.web.cache import PromptCache
from bots.web.ratelimit import RateLimiter
from bots.web.state import EXTENSION, WebState
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.worker.celery_app import create_celery


def create_app(settings: Settings) -> Flask:
    """The web app for `settings`: prompt URLs, the REST API, health, metrics, and Slack's
    HTTP endpoint when SLACK_SIGNING_SECRET is set."""
    app = Flask("imagine")
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    app.extensions[EXTENSION] = WebState(
        settings=settings,
        queue=queue,
        storage=Storage(settings.images_dir),
        limits=Limits.from_settings(settings),
        cache=PromptCache(queue.redis, pending_ttl=settings.job_ttl),
        limiter=RateLimiter(queue.redis, settings.rate_limit_per_minute),
    )
    if settings.trust_forwarded_for:
        # One proxy in front: its X-Forwarded-For entry is the client; earlier ones could
        # be forged by the client itself.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    for blueprint in (images.bp, api.bp, ops.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, http_error)
    if settings.slack_signing_secret:
        from bots.slack.app import mount_slack  # noqa: PLC0415 - slack-bolt only when configured

        mount_slack(app, settings, queue)
    return app


def http_error(exc: HTTPException) -> Response:
    """JSON for the API; short text elsewhere (Flask's default is an HTML page)."""
    if request.path.startswith("/api/"):
        return api.error_response(exc.code or 500, exc.description or exc.name)
    return Response(f"{exc.code} {exc.name}: {exc.description}\n", exc.code or 500,
                    mimetype="text/plain")
