"""Operational counters kept in Redis, rendered in the Prometheus text format.

Events happen in many processes (the web server, generate and deliver workers), so the
counters cannot live in one process's memory: each event is one HINCRBY on a Redis hash,
and `/metrics` reads the hashes at scrape time. Gauges (queue depth, workers) are read from
the queue's own keys at scrape time too.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from tasks.core.ops_metrics import GENERATION_BUCKETS, OpsCollector
from tasks.names import (
    METRICS_CACHE_KEY,
    METRICS_GENERATION_KEY,
    METRICS_JOBS_KEY,
    METRICS_MODEL_LOADS_KEY,
    METRICS_RETRIES_KEY,
    METRICS_WEB_KEY,
    QUEUE_KEY,
    RUNNING_KEY,
)

# Seconds to bring a model onto the device: from CPU memory (a fraction of a second) up to a
# large checkpoint read from a slow disk.
MODEL_LOAD_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _field(*labels: str) -> str:
    # "|" never occurs in platform names, outcomes or reasons.
    return "|".join(labels)


def record_job_finished(client: redis.Redis | redis.client.Pipeline, platform: str,
                        outcome: str, seconds: float | None) -> None:
    """Count a finished job; a drawn one also adds its generation time to the histogram."""
    client.hincrby(METRICS_JOBS_KEY, _field(platform, outcome), 1)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return
    bound = next((b for b in GENERATION_BUCKETS if seconds <= b), math.inf)
    # Per-bucket counts here; they are made cumulative when rendered.
    client.hincrby(METRICS_GENERATION_KEY, f"le={bound:g}", 1)
    client.hincrbyfloat(METRICS_GENERATION_KEY, "sum", seconds)
    client.hincrby(METRICS_GENERATION_KEY, "count", 1)


def record_model_load(client: redis.Redis, model: str, origin: str, seconds: float) -> None:
    """Add one model load (origin `disk`, or `cpu` for a copy brought back) to its histogram."""
    if not math.isfinite(seconds) or seconds < 0:
        return
    bound = next((b for b in MODEL_LOAD_BUCKETS if seconds <= b), math.inf)
    prefix = _field(model, origin)
    with client.pipeline(transaction=False) as pipe:
        pipe.hincrby(METRICS_MODEL_LOADS_KEY, f"{prefix}|le={bound:g}", 1)
        pipe.hincrbyfloat(METRICS_MODEL_LOADS_KEY, f"{prefix}|sum", seconds)
        pipe.hincrby(METRICS_MODEL_LOADS_KEY, f"{prefix}|count", 1)
        pipe.execute()


def record_delivery_retry(client: redis.Redis, platform: str, reason: str) -> None:
    client.hincrby(METRICS_RETRIES_KEY, _field(platform, reason), 1)


def record_web(client: redis.Redis, event: str) -> None:
    client.hincrby(METRICS_WEB_KEY, event, 1)


class BufferedCounts:
    """Counts of frequent events (cache hits) kept in memory and added to Redis in batches.

    A hit costs no Redis round trip; a daemon thread flushes every `interval` seconds, and
    whoever renders /metrics in this process flushes first, so a scrape is never behind.
    """

    def __init__(self, client: redis.Redis, key: str, interval: float = 0.5) -> None:
        self.redis = client
        self.key = key
        self.interval = interval
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, field: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[field] = self._counts.get(field, 0) + amount
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="imagine-metrics",
                                                daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        if not counts:
            return
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for field, amount in counts.items():
                    pipe.hincrby(self.key, field, amount)
                pipe.execute()
        except redis.RedisError:
            with self._lock:  # keep them for the next flush rather than lose them
                for field, amount in counts.items():
                    self._counts[field] = self._counts.get(field, 0) + amount

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


def _decoded(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {key.decode(): float(value) for key, value in raw.items()}


class RedisCollector:
    """A prometheus_client collector that reads the counters and the queue at scrape time."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def collect(self) -> Iterator[Metric]:
        with self.redis.pipeline(transaction=False) as pipe:
            for key in (METRICS_JOBS_KEY, METRICS_GENERATION_KEY, METRICS_CACHE_KEY,
                        METRICS_RETRIES_KEY, METRICS_WEB_KEY, METRICS_MODEL_LOADS_KEY):
                pipe.hgetall(key)
            pipe.zcard(QUEUE_KEY)
            pipe.scard(RUNNING_KEY)
            jobs, generation, cache, retries, web, loads, queued, running = pipe.execute()

        family = CounterMetricFamily("imagine_jobs", "Finished jobs by platform and outcome.",
                                     labels=["platform", "outcome"])
        for key, value in sorted(_decoded(jobs).items()):
            family.add_metric(key.split("|", 1), value)
        yield family

        generation = _decoded(generation)
        cumulative, buckets = 0.0, []
        for bound in (*GENERATION_BUCKETS, math.inf):
            cumulative += generation.get(f"le={bound:g}", 0.0)
            buckets.append(("+Inf" if bound == math.inf else f"{bound:g}", cumulative))
        yield HistogramMetricFamily(
            "imagine_generation_seconds", "Seconds from a job's start to its images.",
            buckets=buckets, sum_value=generation.get("sum", 0.0))

        family = CounterMetricFamily("imagine_cache", "Prompt URL requests by cache result.",
                                     labels=["result"])
        cache = _decoded(cache)
        for result in ("hit", "miss"):
            family.add_metric([result], cache.get(result, 0.0))
        yield family

        family = CounterMetricFamily("imagine_delivery_retries",
                                     "Deliveries retried, by platform and reason.",
                                     labels=["platform", "reason"])
        for key, value in sorted(_decoded(retries).items()):
            family.add_metric(key.split("|", 1), value)
        yield family

        family = CounterMetricFamily("imagine_web_events",
                                     "Web answers other than images: placeholders, refusals.",
                                     labels=["event"])
        for key, value in sorted(_decoded(web).items()):
            family.add_metric([key], value)
        yield family

        yield _model_loads(_decoded(loads))

        yield GaugeMetricFamily("imagine_queue_depth", "Jobs waiting for a generate worker.",
                                value=float(queued))
        yield GaugeMetricFamily("imagine_jobs_running", "Jobs being drawn right now.",
                                value=float(running))


def _model_loads(loads: dict[str, float]) -> Metric:
    family = HistogramMetricFamily(
        "imagine_model_load_seconds",
        "Seconds to bring a model onto a worker's device, from disk or back from CPU memory.",
        labels=["model", "origin"])
    series = sorted({tuple(key.split("|")[:2]) for key in loads if key.count("|") == 2})
    for model, origin in series:
        prefix = _field(model, origin)
        cumulative, buckets = 0.0, []
        for bound in (*MODEL_LOAD_BUCKETS, math.inf):
            cumulative += loads.get(f"{prefix}|le={bound:g}", 0.0)
            buckets.append(("+Inf" if bound == math.inf else f"{bound:g}", cumulative))
        family.add_metric([model, origin], buckets, loads.get(f"{prefix}|sum", 0.0))
    return family


def render(client: redis.Redis) -> bytes:
    """The Prometheus text exposition of everything above."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client))  # type: ignore[arg-type]
    registry.register(OpsCollector(client))  # type: ignore[arg-type]
    return generate_latest(registry)
