"""Starting a Celery worker for one queue with the pool that queue needs."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import threading
import time

from celery import signals

from settings import Settings
from settings.errors import ConfigError
from tasks.core.delivery import AdapterRegistry
from tasks.core.routing import served_models, worker_queues
from tasks.local.gpus import visible_gpus
from tasks.names import GENERATE_QUEUE, QUEUES, TEXT_QUEUE
from tasks.worker.celery_app import create_celery
from tasks.worker.celery_tasks import register
from tasks.worker.gc_task import register_gc
from tasks.worker.text_task import register_text

DEFAULT_DELIVER_THREADS = 16
# A text worker's threads share one model (its generate calls take turns): two keep it busy.
DEFAULT_TEXT_THREADS = 2
# A worker that stops by itself once it was ready is started again after this long
# (restart); one that fails while starting has a problem a restart would only repeat.
RESTART_DELAY = 2.0

log = logging.getLogger(__name__)


def worker_hostname(queue: str, device: str = "auto") -> str:
    """The Celery node name: the queue, the GPU when pinned to one, the pid (so a restarted
    worker never inherits the heartbeat its dead predecessor's jobs are judged by)."""
    gpu = re.fullmatch(r"cuda:([0-9]+)", device)
    role = f"{queue}-gpu{gpu.group(1)}" if gpu and queue == GENERATE_QUEUE else queue
    return f"{role}-{os.getpid()}@{socket.gethostname()}"


def worker_argv(queue: str, concurrency: int | None, loglevel: str, *,
                models: tuple[str, ...] = (), hostname: str | None = None) -> list[str]:
    if queue == GENERATE_QUEUE:
        # Prefork with one child: the child holds the model; if it dies (OOM killer) the
        # parent requeues its job at once and forks a fresh child.
        pool, threads = "prefork", 1
        queues = ",".join(worker_queues(models or ("default",)))
    else:
        default = DEFAULT_TEXT_THREADS if queue == TEXT_QUEUE else DEFAULT_DELIVER_THREADS
        pool, threads = "threads", concurrency or default
        queues = queue
    return [
        "worker", "--queues", queues, "--pool", pool, "--concurrency", str(threads),
        "--hostname", hostname or worker_hostname(queue), "--loglevel", loglevel,
        "--without-gossip", "--without-mingle",
    ]


def check_gpu(device: str) -> None:
    """IMAGINE_DEVICE=cuda:N must name a GPU this machine has; said before the worker
    starts (counted in a child process: CUDA must not start before prefork forks)."""
    gpu = re.fullmatch(r"cuda:([0-9]+)", device)
    if gpu is None:
        return
    count = visible_gpus()
    if int(gpu.group(1)) >= count:
        raise ConfigError(
            f"IMAGINE_DEVICE={device} names GPU {gpu.group(1)}, but torch sees "
            f"{count} GPU{'s' if count != 1 else ''}: use cuda:0 to cuda:{count - 1}"
            if count else
            f"IMAGINE_DEVICE={device} names a GPU, but torch sees none: use auto or cpu"
        )


def run_worker(settings: Settings, queue: str, *, adapters: AdapterRegistry,
               concurrency: int | None = None, loglevel: str = "info") -> None:
    """Run a worker in this process. `adapters` comes from the composition root: a generate
    worker asks it which platforms want deliveries, a deliver worker builds adapters from it.
    It rides on the app, which prefork children inherit. A generate worker consumes the
    queues of the models it serves (IMAGINE_WORKER_MODELS) and preloads them."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    app = create_celery(settings, adapters)
    if queue == GENERATE_QUEUE:
        app.served_models = served_models(settings)
        check_gpu(settings.device)
        app.warm_model = True
    register(app)
    register_gc(app)
    register_text(app)
    hostname = app.node_name = worker_hostname(queue, settings.device)
    asked = threading.Event()  # a shutdown signal (SIGTERM, Ctrl-C) arrived
    ready = threading.Event()  # it started consuming: a later stop is not a start-up failure

    @signals.worker_shutting_down.connect(weak=False)
    def shutting_down(**_: object) -> None:
        asked.set()

    @signals.worker_ready.connect(weak=False)
    def became_ready(**_: object) -> None:
        ready.set()

    try:
        app.worker_main(worker_argv(queue, concurrency, loglevel, models=app.served_models,
                                    hostname=hostname))
    except SystemExit:
        if asked.is_set() or not ready.is_set():
            raise
    if ready.is_set() and not asked.is_set():
        restart()


def restart() -> None:
    """Start this worker again in this process (same pid, fresh interpreter).

    Celery stops a worker for good, exit code 0 included, on an error it calls
    unrecoverable, and some come from the broker connection itself (kombu 5.7 failing to
    acknowledge over a connection Redis just closed): a Redis restart must not leave a host
    without a worker. What it held is not lost: its unfinished jobs are redrawn and its
    deliveries sent again (the reaper)."""
    log.error("the worker stopped by itself (no shutdown was asked); starting it again in "
              "%.0f s", RESTART_DELAY)
    time.sleep(RESTART_DELAY)
    # The command that started this process, as given (`imagine worker …`, `python -m …`).
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
