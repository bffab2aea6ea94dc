"""Operations endpoints: `/healthz` for load balancers and `/metrics` for Prometheus.

`/healthz` says ok or not ok for each part and nothing more: no addresses, no exception
texts (a Redis error names the Redis URL). `/metrics` asks for `Authorization: Bearer
<IMAGINE_METRICS_TOKEN>` when that is set.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, jsonify, request

from bots.web.state import web_state
from tasks.core import metrics
from tasks.names import DELIVER_QUEUE, GENERATE_QUEUE

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)

OK, NOT_OK = "ok", "not ok"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Healthy when Redis answers and a generate worker is alive; each part says ok/not ok."""
    queue = web_state().queue
    try:
        queue.redis.ping()
        generate = len(queue.alive_workers(GENERATE_QUEUE))
        deliver = len(queue.alive_workers(DELIVER_QUEUE))
        queued, running = queue.queued_count(), queue.running_count()
    except Exception:  # noqa: BLE001 - any failure means unhealthy; the log has the details
        log.warning("healthz: Redis does not answer", exc_info=True)
        parts = {"redis": NOT_OK, "generate_workers": NOT_OK, "deliver_workers": NOT_OK}
        response = jsonify(ok=False, parts=parts, redis=False)
        response.headers["Retry-After"] = "5"  # Redis restarting: ask again soon
        return response, 503
    ok = generate > 0
    body = {"ok": ok,
            "parts": {"redis": OK, "generate_workers": OK if generate else NOT_OK,
                      "deliver_workers": OK if deliver else NOT_OK},
            "redis": True, "generate_workers": generate, "deliver_workers": deliver,
            "queued": queued, "running": running}
    return jsonify(body), 200 if ok else 503


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Jobs by platform and outcome, queue depth, generation time, cache, retries."""
    state = web_state()
    token = state.settings.metrics_token
    if token is not None and not _bearer_matches(token.get_secret_value()):
        return Response("401 Unauthorized: /metrics needs "
                        "`Authorization: Bearer <IMAGINE_METRICS_TOKEN>`.\n", 401,
                        mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="imagine metrics"'})
    state.cache_counts.flush()  # this process's recent hits, so the scrape is current
    return Response(metrics.render(state.redis), mimetype=None, content_type=metrics.CONTENT_TYPE)


def _bearer_matches(token: str) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                              token.encode())
