"""A deliver worker reading images from a bucket that goes down: the delivery is retried
until the bucket is back, then posted once (moto's S3 server, the fake Slack, a real worker)."""

from __future__ import annotations

import io
from collections.abc import Callable

import redis
from PIL import Image

from generator.request import ImageRequest
from settings import Settings
from tasks.core.jobs import Job, JobStatus, JobStore, Requester
from tasks.core.storage import open_storage
from tasks.names import DELIVER_TASK, METRICS_RETRIES_KEY
from tasks.worker.celery_app import create_celery
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fixtures_redis import Process, wait_for
from tests.fixtures_s3 import S3Server


def a_png() -> bytes:
    data = io.BytesIO()
    Image.new("RGB", (8, 8), "teal").save(data, format="PNG")
    return data.getvalue()


def test_a_delivery_is_retried_through_an_outage_and_posted_once(
        imagine_env: dict[str, str], s3_env: dict[str, str], s3_server: S3Server,
        slack: FakeSlack, start_worker: Callable[..., Process]) -> None:
    env = {**imagine_env, **s3_env, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack.api_url}
    settings = Settings(_env_file=None)
    png = a_png()
    name = open_storage(settings).put(png)
    posted = slack.handle("chat.postMessage", {"channel": "C1", "text": "queued"},
                          BOT_TOKEN, b"")[1]
    job = Job(requester=Requester(platform="slack", user="U1", channel="C1",
                                  message=posted["ts"], thread=posted["ts"],
                                  extra={"team": "T1"}),
              request=ImageRequest(prompt="a fox"), status=JobStatus.done, images=[name],
              seeds=[7], image_sizes=[(8, 8)])
    client = redis.Redis.from_url(settings.redis_url)
    JobStore(client, settings.job_ttl).save(job)
    worker = start_worker("deliver", env=env)

    s3_server.stop()
    try:
        create_celery(settings).send_task(DELIVER_TASK, args=[job.id], queue="deliver")
        # The bucket's own failure, retried (not only a copy of the message that a short
        # visibility timeout handed out while the first still waited for the bucket).
        wait_for(lambda: "did not answer" in worker.log() and "retried later" in
                 worker.log().lower(), 60, message=f"a retried delivery\n{worker.log()[-3000:]}")
        assert client.hget(METRICS_RETRIES_KEY, "slack|transient")
        assert slack.of("files.completeUploadExternal") == []
    finally:
        s3_server.start()
    slack.wait(lambda: slack.of("files.completeUploadExternal"), 60)
    uploads = slack.of("files.completeUploadExternal")
    assert len(uploads) == 1
    assert list(slack.uploads.values()) == [png]
