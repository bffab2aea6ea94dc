"""Image retention on a schedule: the `imagine.gc` task and the Celery beat that sends it.

Deployments run one `imagine beat` (compose's `beat` service); it sends `imagine.gc` to the
deliver queue every GC_INTERVAL seconds, and whichever deliver worker takes it collects
(the collection's own lock keeps two from overlapping). `imagine up` runs `imagine gc
--every` instead: one process fewer on a single machine.
"""

from __future__ import annotations

import logging
from typing import Any

from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.retention import GC_INTERVAL, GcBusy, collect_locked
from tasks.core.storage import open_storage
from tasks.names import DELIVER_QUEUE, GC_TASK
from tasks.worker.celery_app import ImagineCelery, create_celery

log = logging.getLogger(__name__)
BEAT_SCHEDULE_FILE = "celerybeat-schedule"


def register_gc(app: ImagineCelery) -> None:
    """Bind `imagine.gc` to a worker's app."""

    @app.task(name=GC_TASK, ignore_result=True)
    def gc() -> None:
        """Delete images past IMAGINE_IMAGE_RETENTION that nothing live needs."""
        settings = app.settings
        if settings.image_retention is None:
            log.info("gc: IMAGINE_IMAGE_RETENTION is not set; images are kept")
            return
        try:
            report = collect_locked(redis_client(settings), open_storage(settings),
                                    settings.image_retention)
        except GcBusy as exc:
            log.info("gc skipped: %s", exc)
            return
        log.info("gc: %s", report.summary())


def beat_schedule(interval: float = GC_INTERVAL) -> dict[str, dict[str, Any]]:
    """Celery beat's schedule: gc on a deliver worker; a send not taken within one interval
    expires rather than piling up behind a stopped deliver worker."""
    return {"imagine-gc": {"task": GC_TASK, "schedule": interval,
                           "options": {"queue": DELIVER_QUEUE, "expires": interval}}}


def run_beat(settings: Settings, loglevel: str = "info") -> None:
    """Run Celery beat in this process (one per deployment) until stopped."""
    app = create_celery(settings)
    app.conf.beat_schedule = beat_schedule()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.Beat(loglevel=loglevel, schedule=str(settings.data_dir / BEAT_SCHEDULE_FILE)).run()
