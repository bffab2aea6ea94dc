"""The Flask application factory: one app for prompt URLs, the REST API, Slack and health."""

from __future__ import annotations

from flask import Flask, jsonify

from settings import Settings
from tasks.celery_app import create_celery
from tasks.connection import redis_client
from tasks.queue import JobQueue


def create_app(settings: Settings) -> Flask:
    app = Flask("imagine")
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    app.extensions["imagine.settings"] = settings
    app.extensions["imagine.queue"] = queue

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

    return app
