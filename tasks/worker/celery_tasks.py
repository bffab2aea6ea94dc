"""The Celery tasks: thin wrappers (ids in, retries out) around BatchRunner and Deliverer.

Heavy resources (the pipeline, Redis pools, adapters) are built once per worker process and
cached on the Task base class, as Celery's guide recommends; never at import time. What they
are built from (settings, the adapter registry) travels on the app, an `ImagineCelery`.
"""

from __future__ import annotations

import http.client
import logging
import random
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis
from celery import Task, signals

from settings import Settings
from tasks.core import delivery_watch, metrics, routing
from tasks.core.connection import redis_client
from tasks.core.delivery import (
    AdapterBusy,
    Deliverer,
    DeliveryBusy,
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
    backoff_seconds,
)
from tasks.core.jobs import Job
from tasks.core.queue import JobQueue
from tasks.core.storage import ImageStore, open_storage
from tasks.names import DELIVER_PROGRESS_TASK, DELIVER_TASK, GENERATE_TASK
from tasks.worker import gpu_stats
from tasks.worker.batch_runner import BatchRunner, QueuePaused
from tasks.worker.celery_app import ImagineCelery, retry_countdown
from tasks.worker.finisher import Finisher
from tasks.worker.heartbeat import Heartbeat, report_loaded
from tasks.worker.reaper import Reaper
from tasks.worker.runner import JobRunner

if TYPE_CHECKING:
    from generator.engine import Engine

log = logging.getLogger(__name__)

MAX_DELIVERY_RETRIES = 25
# Errors worth another try besides TransientDeliveryError: a reset connection, a reply cut
# short (http.client.IncompleteRead), a timeout.
RETRYABLE = (TransientDeliveryError, OSError, http.client.HTTPException)


class ImagineTask(Task):
    """Per-process resources shared by every task of this worker process."""

    @property
    def imagine_app(self) -> ImagineCelery:
        app: ImagineCelery = self.app
        return app

    @property
    def settings(self) -> Settings:
        return self.imagine_app.settings

    # Not `queue`: Celery reads a task's `queue` attribute as its routing option when
    # sending it, which would build a JobQueue there and hand it to kombu as a queue name.
    @cached_property
    def job_queue(self) -> JobQueue:
        return JobQueue(self.settings, redis_client(self.settings), self.app)

    @cached_property
    def storage(self) -> ImageStore:
        return open_storage(self.settings)

    @cached_property
    def runner(self) -> JobRunner:
        return JobRunner(self.settings, self.job_queue, self.storage, engine_for(self.imagine_app),
                         self._dispatch, self.imagine_app.adapters)

    @cached_property
    def batches(self) -> BatchRunner:
        return BatchRunner(self.runner, Finisher())

    @cached_property
    def deliverer(self) -> Deliverer:
        return Deliverer(self.settings, self.job_queue.redis, self.storage, self.imagine_app.adapters)

    def _dispatch(self, name: str, job_id: str, options: dict[str, Any]) -> None:
        self.app.send_task(name, args=[job_id], **options)

    def retry_delivery(self, job: Job, exc: Exception, reason: str, seconds: float) -> None:
        """Retry this delivery in `seconds` (kept under the visibility timeout), or give up
        after MAX_DELIVERY_RETRIES."""
        if self.request.retries >= MAX_DELIVERY_RETRIES:
            log.error("giving up delivering job %s: %s", job.id, exc)
            return
        metrics.record_delivery_retry(self.job_queue.redis, job.requester.platform, reason)
        countdown = retry_countdown(self.settings, seconds)
        delivery_watch.expect(self.job_queue.redis, job.id, countdown)
        raise self.retry(countdown=countdown, exc=exc) from None


def engine_for(app: ImagineCelery) -> Engine:
    """The process's one Engine (the per-process model cache), created on first use."""
    if app.engine is None:
        from generator.engine import Engine  # noqa: PLC0415 - torch only in generate workers

        app.engine = Engine.from_settings(app.settings)
    return app.engine


def register(app: ImagineCelery) -> None:
    """Bind the tasks (and the worker's signal handlers) to `app`; done by workers only."""

    @app.task(base=ImagineTask, bind=True, name=GENERATE_TASK)
    def generate(self: ImagineTask, job_id: str) -> None:
        """Job `job_id`'s message, a ticket: draw batches of its model's waiting jobs, the
        ones its previous holder left first (tasks.worker.batch_runner)."""
        queue_name = (self.request.delivery_info or {}).get("routing_key")
        try:
            self.batches.run_ticket(job_id, worker=self.request.hostname, queue_name=queue_name)
        except QueuePaused as paused:
            # Sent again before this one is acknowledged: a worker dying in between leaves
            # two copies (the second claims nothing), never none.
            self.app.send_task(GENERATE_TASK, args=[job_id], task_id=job_id, queue=queue_name
                               or routing.job_queue_name(paused.model, self.settings.catalogue))
        finally:
            _report_loaded(self.imagine_app, self.job_queue.redis, self.request.hostname)

    @app.task(base=ImagineTask, bind=True, name=DELIVER_TASK, max_retries=None)
    def deliver(self: ImagineTask, job_id: str) -> None:
        """Post a finished job back to its platform, once."""
        job = self.job_queue.jobs.find(job_id)
        if job is None:
            return
        try:
            self.deliverer.deliver_result(job)
        except (AdapterBusy, DeliveryBusy) as exc:
            # A full slot, or a delivery another task holds (a dead one's lock runs out), is
            # not a failure: the same message again, its retries not counted, so neither a
            # busy hour of webhooks nor a worker killed mid-delivery uses up a job's retries.
            spread = exc.retry_after if isinstance(exc, AdapterBusy) else 1.0
            countdown = retry_countdown(self.settings,
                                        exc.retry_after + random.uniform(0, spread))
            delivery_watch.expect(self.job_queue.redis, job_id, countdown)
            self.apply_async(args=[job_id], retries=self.request.retries, countdown=countdown)
            return
        except RateLimited as exc:
            self.retry_delivery(job, exc, "rate_limited", exc.retry_after)
        except PermanentDeliveryError as exc:
            log.error("cannot deliver job %s: %s", job_id, exc)
        except RETRYABLE as exc:
            self.retry_delivery(job, exc, "transient", backoff_seconds(self.request.retries))
        delivery_watch.settle(self.job_queue.redis, job_id)

    @app.task(base=ImagineTask, bind=True, name=DELIVER_PROGRESS_TASK, ignore_result=True)
    def deliver_progress(self: ImagineTask, job_id: str) -> None:
        """Show a job's progress; skipped, not retried, when the platform is busy."""
        job = self.job_queue.jobs.find(job_id)
        if job is None:
            return
        try:
            self.deliverer.deliver_progress(job, self.job_queue.position(job_id))
        except (RateLimited, PermanentDeliveryError, *RETRYABLE) as exc:
            log.info("progress of job %s not shown: %s", job_id, exc)

    _connect_worker_signals(app)


def _connect_worker_signals(app: ImagineCelery) -> None:
    heartbeat: list[Heartbeat] = []

    @signals.worker_ready.connect(weak=False)
    def start_heartbeat(sender: Any = None, **_: Any) -> None:
        if sender is None or sender.app is not app:
            return
        queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
        client = redis_client(app.settings)
        reaper = Reaper(JobQueue(app.settings, client, app), app.adapters.has_adapter,
                        sender.hostname)
        beat = Heartbeat(client, sender.hostname, queues, after_beat=reaper.run_once,
                         models=app.served_models if app.warm_model else None)
        beat.start()
        heartbeat.append(beat)

    @signals.worker_shutdown.connect(weak=False)
    def stop_heartbeat(sender: Any = None, **_: Any) -> None:
        for beat in heartbeat:
            beat.stop()

    @signals.worker_process_init.connect(weak=False)
    def load_model(**_: Any) -> None:
        # Set by `imagine worker` for generate workers: load the models it serves (as many
        # as it keeps) before the first job arrives, so its jobs find them loaded.
        if app.warm_model:
            from generator.speedups import describe  # noqa: PLC0415 - torch only here

            engine = engine_for(app)
            for name in app.served_models[:app.settings.max_loaded_models] or ("default",):
                engine.warm_up(name)
            log.info("%s", describe(engine.speed, engine.device, engine.pipeline(name)))
            _report_loaded(app, redis_client(app.settings), app.node_name)
            # GPU memory and use for /metrics, from the process that holds the models.
            gpu_stats.start_reporter(redis_client(app.settings), app.node_name)


def _report_loaded(app: ImagineCelery, client: redis.Redis, hostname: str | None) -> None:
    """Tell the heartbeat which models this drawing process holds; never fails a job."""
    if app.engine is None or not hostname:
        return
    try:
        report_loaded(client, hostname, app.engine.models.on_device)
    except redis.RedisError as exc:
        log.info("loaded models not reported: %s", exc)
