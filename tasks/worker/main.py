"""Starting a Celery worker for one queue with the pool that queue needs."""

from __future__ import annotations

import os

from settings import Settings
from tasks.worker.celery_app import DELIVER_QUEUE, GENERATE_QUEUE, create_celery

DEFAULT_DELIVER_THREADS = 16


def worker_argv(queue: str, concurrency: int | None, loglevel: str) -> list[str]:
    if queue == GENERATE_QUEUE:
        # Prefork with one child: the child holds the model; if it dies (OOM killer) the
        # parent requeues its job at once and forks a fresh child.
        pool, threads = "prefork", 1
    else:
        pool, threads = "threads", concurrency or DEFAULT_DELIVER_THREADS
    return [
        "worker", "--queues", queue, "--pool", pool, "--concurrency", str(threads),
        "--hostname", f"{queue}-{os.getpid()}@%h", "--loglevel", loglevel,
        "--without-gossip", "--without-mingle",
    ]


def run_worker(settings: Settings, queue: str, *, concurrency: int | None = None,
               loglevel: str = "info") -> None:
    if queue not in (GENERATE_QUEUE, DELIVER_QUEUE):
        raise ValueError(f"unknown queue {queue!r}")
    app = create_celery(settings)
    # Read by the worker_process_init handler: generate workers load the model at start.
    app.imagine_warm_model = queue == GENERATE_QUEUE  # type: ignore[attr-defined]
    app.worker_main(worker_argv(queue, concurrency, loglevel))
