"""The Flask application factory: one app for prompt URLs, the REST API, Slack and health."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from bots.limits import Limits
from bots.web.cache import PromptCache
from bots.web.ratelimit import RateLimiter
from bots.web.state import EXTENSION, WebState
from settings import Settings
from tasks.core import metrics
from tasks.core.connection import redis_client
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.worker.celery_app import create_celery


def create_app(settings: Settings) -> Flask:
    app = Flask("imagine")
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    app.extensions["imagine.settings"] = settings
    app.extensions["imagine.queue"] = queue
    app.extensions[EXTENSION] = state = WebState(
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

    from bots.web import api as web_api  # noqa: PLC0415 - views import the state module
    from bots.web import web_images

    app.register_blueprint(web_images.bp)
    app.register_blueprint(web_api.bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        # JSON for the API; short text elsewhere (Flask's default is an HTML page).
        if request.path.startswith("/api/"):
            return web_api.error_response(exc.code or 500, exc.description or exc.name)
        response = Response(f"{exc.code} {exc.name}: {exc.description}\n", exc.code or 500,
                            mimetype="text/plain")
        return response

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        """Redis reachable and at least one generate worker alive."""
        try:
            queue.redis.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            return jsonify(ok=False, redis=False, error=str(exc)), 503
        workers = queue.alive_workers("generate")
        ok = bool(workers)
        body = {"ok": ok, "redis": True, "generate_workers": len(workers),
                "deliver_workers": len(queue.alive_workers("deliver")),
                "queued": queue.queued_count(), "running": queue.running_count()}
        return jsonify(body), 200 if ok else 503

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        """Jobs by platform and outcome, queue depth, generation time, cache, retries."""
        state.cache_counts.flush()  # this process's recent hits, so the scrape is current
        return Response(metrics.render(queue.redis), mimetype=None,
                        content_type=metrics.CONTENT_TYPE)

    if settings.slack_signing_secret:
        from bots.slack.app import mount_slack  # noqa: PLC0415 - slack-bolt only when configured

        mount_slack(app, settings, queue)
    return app
