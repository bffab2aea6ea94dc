"""The Celery tasks: thin wrappers (ids in, retries out) around JobRunner and Deliverer.

Heavy resources (the pipeline, Redis pools, adapters) are built once per worker process and
cached on the Task base class, as Celery's guide recommends; never at import time.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from celery import Celery, Task, signals

from settings import Settings
from tasks.core import metrics
from tasks.core.connection import redis_client
from tasks.core.delivery import (
    Deliverer,
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
    backoff_seconds,
)
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.worker.heartbeat import Heartbeat
from tasks.worker.runner import JobRunner

log = logging.getLogger(__name__)

MAX_DELIVERY_RETRIES = 25


class ImagineTask(Task):  # type: ignore[misc]
    """Per-process resources shared by every task of this worker process."""

    @property
    def settings(self) -> Settings:
        return self.app.imagine_settings  # type: ignore[no-any-return]

    # Not `queue`: Celery reads a task's `queue` attribute as its routing option when
    # sending it, which would build a JobQueue there and hand it to kombu as a queue name.
    @cached_property
    def job_queue(self) -> JobQueue:
        return JobQueue(self.settings, redis_client(self.settings), self.app)

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.settings.images_dir)

    @cached_property
    def runner(self) -> JobRunner:
        return JobRunner(self.settings, self.job_queue, self.storage, engine_for(self.app),
                         self._dispatch)

    @cached_property
    def deliverer(self) -> Deliverer:
        return Deliverer(self.settings, self.job_queue.redis, self.storage)

    def _dispatch(self, name: str, job_id: str, options: dict[str, Any]) -> None:
        self.app.send_task(name, args=[job_id], **options)


def engine_for(app: Celery) -> Any:
    """The process's one Engine (the per-process model cache), created on first use."""
    engine = getattr(app, "imagine_engine", None)
    if engine is None:
        from generator.engine import Engine  # noqa: PLC0415 - torch only in generate workers

        engine = Engine.from_settings(app.imagine_settings)
        app.imagine_engine = engine
    return engine


def register(app: Celery) -> None:
    @app.task(base=ImagineTask, bind=True, name="imagine.generate")
    def generate(self: ImagineTask, job_id: str) -> None:
        """Draw one job's images and hand them to delivery."""
        self.runner.run(job_id)

    @app.task(base=ImagineTask, bind=True, name="imagine.deliver", max_retries=None)
    def deliver(self: ImagineTask, job_id: str) -> None:
        """Post a finished job back to its platform, once."""
        job = self.job_queue.jobs.find(job_id)
        if job is None:
            return
        try:
            self.deliverer.deliver_result(job)
        except RateLimited as exc:
            if self.request.retries >= MAX_DELIVERY_RETRIES:
                log.error("giving up delivering job %s: %s", job_id, exc)
                return
            metrics.record_delivery_retry(self.job_queue.redis, job.requester.platform,
                                          "rate_limited")
            raise self.retry(countdown=exc.retry_after, exc=exc) from None
        except PermanentDeliveryError as exc:
            log.error("cannot deliver job %s: %s", job_id, exc)
        except (TransientDeliveryError, OSError) as exc:
            if self.request.retries >= MAX_DELIVERY_RETRIES:
                log.error("giving up delivering job %s: %s", job_id, exc)
                return
            metrics.record_delivery_retry(self.job_queue.redis, job.requester.platform,
                                          "transient")
            raise self.retry(countdown=backoff_seconds(self.request.retries), exc=exc) from None

    @app.task(base=ImagineTask, bind=True, name="imagine.deliver_progress", ignore_result=True)
    def deliver_progress(self: ImagineTask, job_id: str) -> None:
        """Show a job's progress; skipped, not retried, when the platform is busy."""
        job = self.job_queue.jobs.find(job_id)
        if job is None:
            return
        try:
            self.deliverer.deliver_progress(job, self.job_queue.position(job_id))
        except (RateLimited, TransientDeliveryError, PermanentDeliveryError, OSError) as exc:
            log.info("progress of job %s not shown: %s", job_id, exc)

    _connect_worker_signals(app)


def _connect_worker_signals(app: Celery) -> None:
    heartbeat: list[Heartbeat] = []

    @signals.worker_ready.connect(weak=False)
    def start_heartbeat(sender: Any = None, **_: Any) -> None:
        if sender is None or sender.app is not app:
            return
        queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
        beat = Heartbeat(redis_client(app.imagine_settings), sender.hostname, queues)
        beat.start()
        heartbeat.append(beat)

    @signals.worker_shutdown.connect(weak=False)
    def stop_heartbeat(sender: Any = None, **_: Any) -> None:
        for beat in heartbeat:
            beat.stop()

    @signals.worker_process_init.connect(weak=False)
    def load_model(**_: Any) -> None:
        # Set by `imagine worker` for generate workers: load before the first job arrives.
        if getattr(app, "imagine_warm_model", False):
            engine_for(app).warm_up()
