"""The operations half of `/metrics`: what the dashboard (ops/grafana-dashboard.json) and
the alerts (ops/prometheus-alerts.yml) read beyond the job counters of tasks.core.metrics.

- generation seconds by model, queue wait (submit to start), images made by platform:
  counters kept in Redis hashes, written when a job finishes (`record_finished`);
- live workers by kind and the age of the oldest waiting job: read at scrape time;
- GPU memory and utilisation: the snapshots generate workers publish
  (tasks.worker.gpu_stats). Only hosts with a GPU publish, so these series exist only
  when at least one GPU worker is alive: a CPU-only deployment exports none of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from tasks.names import (
    JOB_KEY,
    METRICS_IMAGES_KEY,
    METRICS_MODEL_GENERATION_KEY,
    METRICS_QUEUE_WAIT_KEY,
    QUEUE_KEY,
    WORKER_BEATS_KEY,
    WORKER_GPU_KEY,
    WORKERS_KEY,
    queue_model,
)

if TYPE_CHECKING:
    from tasks.core.jobs import Job

# Seconds per job on anything from a tiny CPU model to a large model on a slow GPU
# (imagine_generation_seconds and its by-model twin).
GENERATION_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# Waits of a quiet queue fall in the lower bounds, those of a busy hour in the upper ones.
WAIT_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
OLDEST_SAMPLE = 200  # waiting jobs looked at for the oldest: the queue is bounded anyway

# name, help, the GpuStats field it shows: bytes from torch's allocator, then NVML's view.
GPU_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("imagine_gpu_memory_allocated_bytes", "GPU memory held by tensors of the worker.",
     "allocated"),
    ("imagine_gpu_memory_reserved_bytes", "GPU memory torch's allocator reserved.",
     "reserved"),
    ("imagine_gpu_memory_max_allocated_bytes",
     "Peak GPU memory held by tensors since the worker started.", "max_allocated"),
    ("imagine_gpu_memory_used_bytes", "GPU memory in use by every process (NVML).", "used"),
    ("imagine_gpu_memory_total_bytes", "GPU memory of the device (NVML).", "total"),
    ("imagine_gpu_utilization_ratio", "Share of time the GPU was busy (NVML), 0-1.",
     "utilization"),
)
GPU_METRICS = frozenset(name for name, _help, _field in GPU_GAUGES)


def _bucket(seconds: float, bounds: tuple[float, ...]) -> str:
    bound = next((b for b in bounds if seconds <= b), math.inf)
    return f"le={bound:g}"


def record_job(pipe: redis.client.Pipeline | redis.Redis, job: Job) -> None:
    """A finished job's share of the operations counters (added to the caller's pipeline)."""
    done = job.status.value == "done"
    waited = None if job.started_at is None else job.started_at - job.created_at
    record_finished(pipe, job.requester.platform, model=job.request.model,
                    images=len(job.images) if done else 0, waited=waited,
                    seconds=job.duration if done else None)


def record_finished(pipe: redis.client.Pipeline | redis.Redis, platform: str, *,
                    model: str | None, images: int, waited: float | None,
                    seconds: float | None) -> None:
    """The counters of one finished job, from its parts."""
    if images:
        pipe.hincrby(METRICS_IMAGES_KEY, platform, images)
    if waited is not None and math.isfinite(waited) and waited >= 0:
        pipe.hincrby(METRICS_QUEUE_WAIT_KEY, _bucket(waited, WAIT_BUCKETS), 1)
        pipe.hincrbyfloat(METRICS_QUEUE_WAIT_KEY, "sum", waited)
        pipe.hincrby(METRICS_QUEUE_WAIT_KEY, "count", 1)
    if model and seconds is not None and math.isfinite(seconds) and seconds >= 0:
        pipe.hincrby(METRICS_MODEL_GENERATION_KEY,
                     f"{model}|{_bucket(seconds, GENERATION_BUCKETS)}", 1)
        pipe.hincrbyfloat(METRICS_MODEL_GENERATION_KEY, f"{model}|sum", seconds)
        pipe.hincrby(METRICS_MODEL_GENERATION_KEY, f"{model}|count", 1)


def _decoded(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {key.decode(): float(value) for key, value in raw.items()}


def _buckets(counts: dict[str, float], prefix: str, bounds: tuple[float, ...]
             ) -> list[tuple[str, float]]:
    cumulative, buckets = 0.0, []
    for bound in (*bounds, math.inf):
        cumulative += counts.get(f"{prefix}le={bound:g}", 0.0)
        buckets.append(("+Inf" if bound == math.inf else f"{bound:g}", cumulative))
    return buckets


class OpsCollector:
    """A prometheus_client collector for the series above, read at scrape time."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def collect(self) -> Iterator[Metric]:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(METRICS_MODEL_GENERATION_KEY)
            pipe.hgetall(METRICS_QUEUE_WAIT_KEY)
            pipe.hgetall(METRICS_IMAGES_KEY)
            pipe.time()
            pipe.zrange(QUEUE_KEY, 0, OLDEST_SAMPLE - 1)
            by_model, waits, images, (seconds, micros), waiting = pipe.execute()
        now = seconds + micros / 1e6

        family = HistogramMetricFamily("imagine_model_generation_seconds",
                                       "Seconds from a job's start to its images, by model.",
                                       labels=["model"])
        by_model = _decoded(by_model)
        for model in sorted({key.split("|")[0] for key in by_model}):
            family.add_metric([model], _buckets(by_model, f"{model}|", GENERATION_BUCKETS),
                              by_model.get(f"{model}|sum", 0.0))
        yield family

        waits = _decoded(waits)
        yield HistogramMetricFamily(
            "imagine_queue_wait_seconds", "Seconds jobs waited from submit to their start.",
            buckets=_buckets(waits, "", WAIT_BUCKETS), sum_value=waits.get("sum", 0.0))

        made = CounterMetricFamily("imagine_images", "Images made, by platform.",
                                   labels=["platform"])
        for platform, count in sorted(_decoded(images).items()):
            made.add_metric([platform], count)
        yield made

        yield GaugeMetricFamily("imagine_queue_oldest_seconds",
                                "Age of the oldest job waiting for a generate worker.",
                                value=self._oldest(waiting, now))
        yield from self._workers(now)

    def _oldest(self, waiting: list[bytes], now: float) -> float:
        if not waiting:
            return 0.0
        created = []
        for raw in self.redis.mget([JOB_KEY.format(job_id.decode()) for job_id in waiting]):
            if raw:
                created.append(float(json.loads(raw).get("created_at", now)))
        return max(0.0, now - min(created)) if created else 0.0

    def _workers(self, now: float) -> Iterator[Metric]:
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in self.redis.zrangebyscore(WORKER_BEATS_KEY, now, "+inf")]
        infos = self.redis.mget([WORKERS_KEY.format(n) for n in names]) if names else []
        counts = {"generate": 0, "deliver": 0}
        for raw in infos:
            queues = json.loads(raw).get("queues", []) if raw else []
            if any(queue_model(str(q)) is not None for q in queues):
                counts["generate"] += 1
            if "deliver" in queues:
                counts["deliver"] += 1
        family = GaugeMetricFamily("imagine_workers", "Workers with a live heartbeat, by kind.",
                                   labels=["kind"])
        for kind, count in counts.items():
            family.add_metric([kind], float(count))
        yield family
        yield from gpu_families(self._gpu_snapshots(names))

    def _gpu_snapshots(self, names: list[str]) -> dict[str, list[dict[str, Any]]]:
        if not names:
            return {}
        raws = self.redis.mget([WORKER_GPU_KEY.format(name) for name in names])
        return {name: json.loads(raw) for name, raw in zip(names, raws, strict=True) if raw}


def gpu_families(snapshots: dict[str, list[dict[str, Any]]]) -> Iterator[Metric]:
    """The GPU gauges, labelled by worker and GPU; nothing at all without GPU snapshots."""
    if not snapshots:
        return
    for name, help_text, field in GPU_GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=["worker", "gpu", "device"])
        for worker, gpus in sorted(snapshots.items()):
            for gpu in gpus:
                value = gpu.get(field)
                if value is not None:
                    family.add_metric([worker, str(gpu.get("gpu")), str(gpu.get("name", ""))],
                                      float(value))
        yield family
