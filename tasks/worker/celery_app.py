"""The Celery app, configured from settings: Redis broker, a GPU queue and an I/O queue.

Front ends use the app only to send tasks by name; a worker also registers the tasks
(`tasks.worker.celery_tasks.register`) and runs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery
from kombu import Queue

from settings import Settings
from tasks.core.connection import celery_url, redis_url
from tasks.core.delivery import AdapterRegistry
from tasks.names import (
    DELIVER_PROGRESS_TASK,
    DELIVER_QUEUE,
    DELIVER_TASK,
    GENERATE_QUEUE,
    GENERATE_TASK,
    PREPARE_TEXT_TASK,
    TEXT_QUEUE,
    generate_queue,
)

if TYPE_CHECKING:
    from generator.engine import Engine

# Kombu restores unacknowledged messages (those of a worker host that vanished) by sweeping
# every interval x throttle seconds; its default of 10 x 10 s would add 100 s to the
# visibility timeout. Sweeping every 10 s (or a third of a short timeout) bounds
# redelivery at visibility timeout + 10 s.
UNACKED_RESTORE_INTERVAL = 10
VISIBILITY_MARGIN = 60


def visibility_timeout(settings: Settings) -> int:
    """Longer than the longest allowed job, so a slow job is never handed out twice."""
    return settings.visibility_timeout or settings.job_timeout + VISIBILITY_MARGIN


def restore_interval(settings: Settings) -> int:
    return max(1, min(UNACKED_RESTORE_INTERVAL, visibility_timeout(settings) // 3))


def retry_countdown(settings: Settings, seconds: float) -> float:
    """`seconds`, cut so a retried task runs before the broker hands its message out again.

    On Redis, a worker holds a message with a countdown unacknowledged until it is due; one
    held past the visibility timeout is restored to the queue and reaches another worker too,
    and each further wait doubles the copies. A quarter of the timeout (at most a minute) is
    left for the retry itself to run.
    """
    timeout = visibility_timeout(settings)
    margin = min(60.0, max(1.0, timeout / 4))
    return max(0.0, min(float(seconds), timeout - margin))


class ImagineCelery(Celery):
    """The project's Celery app, carrying what every task and signal of its process shares.

    Set before the worker starts, so prefork children inherit it; never sent anywhere.
    """

    settings: Settings
    # Which platforms get deliveries, and how their adapters are built (the CLI fills it).
    adapters: AdapterRegistry
    # A generate worker loads the model as soon as its child process starts.
    warm_model: bool = False
    # The models a generate worker serves (routing.served_models): their queues are the
    # ones it consumes, and it preloads them.
    served_models: tuple[str, ...] = ()
    # The Celery node name `imagine worker` chose, known to children before any task runs.
    node_name: str = ""
    # The process's one Engine (its model cache), built on first use.
    engine: Engine | None = None


def create_celery(settings: Settings, adapters: AdapterRegistry | None = None,
                  **overrides: object) -> ImagineCelery:
    """A configured Celery app; `adapters` matter to workers only (front ends just send
    tasks), `overrides` are Celery settings."""
    url = celery_url(redis_url(settings))
    app = ImagineCelery("imagine", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        # One generate queue per catalogue model (routing), "generate" for the default one.
        task_queues=[*(Queue(generate_queue(name)) for name in settings.catalogue),
                     Queue(DELIVER_QUEUE), Queue(TEXT_QUEUE)],
        task_default_queue=GENERATE_QUEUE,
        task_routes={GENERATE_TASK: {"queue": GENERATE_QUEUE},
                     DELIVER_TASK: {"queue": DELIVER_QUEUE},
                     DELIVER_PROGRESS_TASK: {"queue": DELIVER_QUEUE},
                     PREPARE_TEXT_TASK: {"queue": TEXT_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        # Results live in our job records; Celery's result store stays empty.
        task_ignore_result=True,
        # A job is acknowledged only once it finished, and requeued if its worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.job_timeout + 30,
        task_soft_time_limit=settings.job_timeout,
        broker_transport_options={
            "visibility_timeout": visibility_timeout(settings),
            "unacked_restore_interval": restore_interval(settings),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        # Loading a real model in a fresh child takes longer than Celery's 4 s default.
        worker_proc_alive_timeout=600,
        # On cold shutdown (SIGTERM under `imagine up`) a running job gets this long, then is
        # requeued at once.
        worker_soft_shutdown_timeout=5.0,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.conf.update(overrides)
    app.settings = settings
    app.adapters = adapters if adapters is not None else AdapterRegistry()
    return app
