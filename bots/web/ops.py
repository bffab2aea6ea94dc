"""Operations endpoints: `/healthz` for load balancers and `/metrics` for Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from bots.web.state import web_state
from tasks.core import metrics
from tasks.names import DELIVER_QUEUE, GENERATE_QUEUE

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Redis reachable and at least one generate worker alive."""
    queue = web_state().queue
    try:
        queue.redis.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return jsonify(ok=False, redis=False, error=str(exc)), 503
    workers = queue.alive_workers(GENERATE_QUEUE)
    ok = bool(workers)
    body = {"ok": ok, "redis": True, "generate_workers": len(workers),
            "deliver_workers": len(queue.alive_workers(DELIVER_QUEUE)),
            "queued": queue.queued_count(), "running": queue.running_count()}
    return jsonify(body), 200 if ok else 503


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Jobs by platform and outcome, queue depth, generation time, cache, retries."""
    state = web_state()
    state.cache_counts.flush()  # this process's recent hits, so the scrape is current
    return Response(metrics.render(state.redis), mimetype=None, content_type=metrics.CONTENT_TYPE)
