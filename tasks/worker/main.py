"""Starting a Celery worker for one queue with the pool that queue needs."""

from __future__ import annotations

import os

from settings import Settings
from tasks.core.delivery import AdapterRegistry
from tasks.names import GENERATE_QUEUE, QUEUES
from tasks.worker.celery_app import create_celery
from tasks.worker.celery_tasks import register

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


def run_worker(settings: Settings, queue: str, *, adapters: AdapterRegistry,
               concurrency: int | None = None, loglevel: str = "info") -> None:
    """Run a worker in this process. `adapters` comes from the composition root: a generate
    worker asks it which platforms want deliveries, a deliver worker builds adapters from it.
    It rides on the app, which prefork children inherit."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    app = create_celery(settings, adapters)
    app.warm_model = queue == GENERATE_QUEUE
    register(app)
    app.worker_main(worker_argv(queue, concurrency, loglevel))

