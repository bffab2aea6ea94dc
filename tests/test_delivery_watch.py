"""A delivery whose message vanished is sent again by the reaper, once it is overdue, and
never for a job already delivered (tasks.core.delivery_watch)."""

from __future__ import annotations

from settings import Settings
from tasks.core import delivery_watch
from tasks.core.connection import redis_client
from tasks.core.jobs import JobStatus
from tasks.core.queue import JobQueue
from tasks.names import DELIVER_QUEUE, DELIVERED_KEY, DELIVERY_DUE_KEY, REAPER_LOCK_KEY
from tasks.worker.celery_app import create_celery
from tasks.worker.reaper import Reaper
from tests.test_queue import make_job


def test_a_lost_delivery_is_sent_again_and_a_delivered_one_is_forgotten(
        settings: Settings) -> None:
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    client = queue.redis
    job = make_job().model_copy(update={"status": JobStatus.done, "images": ["a" * 32]})
    queue.jobs.save(job)
    reaper = Reaper(queue, lambda platform: True, "test")
    waiting = client.llen(DELIVER_QUEUE)

    delivery_watch.expect(client, job.id)  # handed out just now: not lost yet
    assert reaper.run_once() == []
    assert client.llen(DELIVER_QUEUE) == waiting

    # Its message vanished: past due, the reaper sends it again and waits once more.
    delivery_watch.expect(client, job.id, -2 * delivery_watch.LOST_AFTER)
    client.delete(REAPER_LOCK_KEY)
    assert reaper.run_once() == [job.id]
    assert client.llen(DELIVER_QUEUE) == waiting + 1
    assert delivery_watch.overdue(client) == []
    assert client.zscore(DELIVERY_DUE_KEY, job.id) is not None

    # Delivered meanwhile (by the first message after all): forgotten, nothing sent.
    client.set(DELIVERED_KEY.format(job.id, "result:complete"), "1")
    delivery_watch.expect(client, job.id, -2 * delivery_watch.LOST_AFTER)
    client.delete(REAPER_LOCK_KEY)
    assert reaper.run_once() == []
    assert client.llen(DELIVER_QUEUE) == waiting + 1
    assert client.zscore(DELIVERY_DUE_KEY, job.id) is None
