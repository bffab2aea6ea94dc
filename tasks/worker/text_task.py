"""IMAGINE_TEXT_QUEUE: the `text` queue, whose workers translate and enhance prompts early.

With it on, JobQueue.submit also sends PREPARE_TEXT_TASK for a job whose text needs a model
(tasks.worker.text_prep); a `text` worker (`imagine worker --queues text`, threads, CPU is
enough) fills the Redis caches while the job waits, and the generate worker finds the
translation and expansion there instead of running the language models between drawings.
A job the text worker did not reach (none running, a long line) is prepared by the generate
worker itself, so the queue is an optimisation, never a requirement.
"""

from __future__ import annotations

import logging

from tasks.core.connection import redis_client
from tasks.core.jobs import JobStatus
from tasks.core.queue import JobQueue
from tasks.names import PREPARE_TEXT_TASK
from tasks.worker.celery_app import ImagineCelery
from tasks.worker.text_prep import TextPrep

log = logging.getLogger(__name__)


def text_device(configured: str) -> str:
    """IMAGINE_DEVICE as the generate worker resolves it (auto: a GPU when there is one)."""
    from generator.loading import resolve_device  # noqa: PLC0415 - torch only when used

    return resolve_device(configured)


def register_text(app: ImagineCelery) -> None:
    """Bind PREPARE_TEXT_TASK to a worker's app."""
    state: dict[str, TextPrep | JobQueue] = {}

    def parts() -> tuple[TextPrep, JobQueue]:
        if not state:  # built once per process, on the first message
            settings = app.settings
            client = redis_client(settings)
            state["queue"] = JobQueue(settings, client, app)
            state["prep"] = TextPrep(settings, client, lambda: text_device(settings.device))
        prep, queue = state["prep"], state["queue"]
        assert isinstance(prep, TextPrep) and isinstance(queue, JobQueue)
        return prep, queue

    @app.task(name=PREPARE_TEXT_TASK, ignore_result=True)
    def prepare_text(job_id: str) -> None:
        """Translate and enhance a waiting job's text into the caches; never fails it (the
        generate worker tries again and reports what went wrong)."""
        prep, queue = parts()
        job = queue.jobs.find(job_id)
        if job is None or job.status is not JobStatus.queued:
            return  # expired, cancelled or already drawing: the generate worker has it
        try:
            prep.warm(job)
        except Exception:  # the generate worker will say so on the job
            log.exception("job %s: preparing its text failed", job_id)
