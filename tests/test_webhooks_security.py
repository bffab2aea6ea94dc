"""Webhooks under the outbound rules: refused at submit (400, nothing sent), signed so a
receiver can check them, answers turned into delivery outcomes, a per-process limit on
concurrent posts, and an image gone from storage failing a delivery once.

The app is served over real HTTP; receivers are tests/fakes/outbound_target.py on 127.0.0.1,
opened with IMAGINE_OUTBOUND_ALLOW=127.0.0.1 where a test means them to be reached.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote

import pytest
import requests

from bots.adapters import delivery_adapters
from bots.web.webhook_delivery import WebhookDelivery
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import (
    AdapterBusy,
    Deliverer,
    DeliveryContext,
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
)
from tasks.core.jobs import Job, JobStatus, JobStore, Requester
from tasks.core.storage import Storage
from tasks.names import DELIVER_TASK, METRICS_RETRIES_KEY
from tasks.worker.celery_app import create_celery
from tests.fakes.outbound_target import Target, outbound_target
from tests.fixtures_redis import Process, wait_for
from tests.web_support import with_settings

SECRET = "whsec-test-secret"
PNG = b"\x89PNG\r\n\x1a\n not really a picture"


def verify(secret: str, headers: Mapping[str, str], body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does (the README's snippet): recompute, compare in constant time,
    refuse old timestamps."""
    timestamp = headers.get("X-Imagine-Timestamp", "")
    signature = headers.get("X-Imagine-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v1={expected}", signature)


def webhook_job(url: str, images: list[str] | None = None) -> Job:
    images = images or []
    return Job(requester=Requester(platform="webhook", user="script", extra={"url": url}),
               request=ImageRequest(prompt="a red fox", width=64, height=64,
                                    num_inference_steps=2, seed=7),
               status=JobStatus.done, images=images, seeds=[7 + i for i in range(len(images))])


def context(settings: Settings, job: Job, kind: str = "progress") -> DeliveryContext:
    return DeliveryContext(settings, Storage(settings.images_dir), redis_client(settings), job,
                           kind)


def test_internal_webhooks_are_refused_at_submit_and_nothing_is_sent(
        serve_app: Callable[..., str]) -> None:
    with outbound_target() as receiver:
        api = f"{serve_app()}/api/v1/jobs"
        cases = {
            "http://127.0.0.1:6379/": "webhook address 127.0.0.1 is a loopback address; only "
            "public addresses are allowed (an operator can allow it with IMAGINE_OUTBOUND_ALLOW)",
            receiver.url + "/hook": "127.0.0.1 is a loopback address",
            "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
            "http://[::1]:8080/": "address ::1 is a loopback address",
            f"http://[::ffff:127.0.0.1]:{receiver.port}/": "::ffff:127.0.0.1 is a loopback",
            f"http://localhost:{receiver.port}/": "what localhost resolves to",
            "http://10.0.0.8/hook": "a private address",
            "ftp://example.com/hook": "webhook URL must start with http:// or https://",
            "http://me:pw@example.com/": "must not contain a user name or password",
        }
        for url, words in cases.items():
            answer = requests.post(api, json={"prompt": "a fox", "webhook": url}, timeout=30)
            assert answer.status_code == 400, url
            assert words in answer.json()["error"], (url, answer.json())
        assert receiver.hits == []

        opened = f"{serve_app(outbound_allow='127.0.0.1')}/api/v1/jobs"
        accepted = requests.post(opened, json={"prompt": "a fox",
                                               "webhook": receiver.url + "/hook"}, timeout=30)
        assert accepted.status_code == 202 and accepted.json()["platform"] == "webhook"
        assert receiver.hits == []  # checked, not called


def test_a_signed_result_is_verifiable_by_its_receiver(settings: Settings) -> None:
    signed = with_settings(settings, webhook_secret=SECRET, outbound_allow="127.0.0.1")
    name = Storage(signed.images_dir).put(PNG)
    with outbound_target() as receiver:
        job = webhook_job(receiver.url + "/hook", [name])
        deliverer = Deliverer(signed, redis_client(signed), Storage(signed.images_dir),
                              delivery_adapters())
        deliverer.deliver_result(job)
        deliverer.deliver_result(job)  # done once: not posted again
        [hit] = receiver.hits
        assert verify(SECRET, hit.headers, hit.body)
        assert not verify(SECRET, hit.headers, hit.body + b" ")
        assert not verify("another-secret", hit.headers, hit.body)
        assert hit.headers["Idempotency-Key"] == f"{job.id}:result"
        body = json.loads(hit.body)
        assert body["event"] == "result" and body["images"][0]["seed"] == 7

        unsigned = with_settings(settings, outbound_allow="127.0.0.1")
        WebhookDelivery(unsigned).deliver_progress(context(unsigned, job), None)
        assert "X-Imagine-Signature" not in receiver.hits[1].headers
        assert "X-Imagine-Timestamp" not in receiver.hits[1].headers


def deliver_to(settings: Settings, receiver: Target, path: str) -> None:
    job = webhook_job(receiver.url + path)
    WebhookDelivery(settings).deliver_progress(context(settings, job), 1)


def test_answers_become_delivery_outcomes(settings: Settings) -> None:
    quick = with_settings(settings, outbound_allow="127.0.0.1", outbound_timeout=1.0)
    with outbound_target() as receiver:
        deliver_to(quick, receiver, "/ok")
        started = time.monotonic()
        deliver_to(quick, receiver, "/huge")  # a 200 is a 200; its 200 MiB are not read
        assert time.monotonic() - started < 2 and receiver.sent < 32 * 1024 * 1024
        with pytest.raises(PermanentDeliveryError, match="redirect.*submit the final URL"):
            deliver_to(quick, receiver, f"/redirect?to={receiver.url}/ok")
        assert [hit.path for hit in receiver.hits][-1].startswith("/redirect")  # not followed
        with pytest.raises(TransientDeliveryError, match="did not answer within 1 s"):
            deliver_to(quick, receiver, "/trickle-body")
        date = email.utils.formatdate(time.time() + 60, usegmt=True)
        with pytest.raises(RateLimited) as limited:
            deliver_to(quick, receiver, f"/status/429?retry_after={quote(date)}")
        assert 50 < limited.value.retry_after <= 60
        with pytest.raises(RateLimited) as limited:
            deliver_to(quick, receiver, "/status/503?retry_after=later")
        assert limited.value.retry_after == 5.0
        with pytest.raises(RateLimited) as limited:
            deliver_to(quick, receiver, "/status/429?retry_after=999999")
        assert limited.value.retry_after == 900
        with pytest.raises(TransientDeliveryError, match="answered 502"):
            deliver_to(quick, receiver, "/status/502")
        with pytest.raises(PermanentDeliveryError, match="answered 410"):
            deliver_to(quick, receiver, "/status/410")
        sent = len(receiver.hits)
        # The operator closes the door after the job was accepted: checked again at send.
        with pytest.raises(PermanentDeliveryError, match="127.0.0.1 is a loopback address"):
            deliver_to(settings, receiver, "/ok")
        assert len(receiver.hits) == sent


def test_webhooks_have_their_own_slots(settings: Settings) -> None:
    one = with_settings(settings, outbound_allow="127.0.0.1", webhook_concurrency=1)
    adapter = WebhookDelivery(one)
    with outbound_target() as receiver:
        slow = webhook_job(receiver.url + "/slow?seconds=1")
        worker = threading.Thread(target=adapter.deliver_progress, args=(context(one, slow), 1))
        worker.start()
        wait_for(lambda: receiver.active == 1, 10, message="the slow post to start")
        started = time.monotonic()
        with pytest.raises(AdapterBusy, match="IMAGINE_WEBHOOK_CONCURRENCY"):
            adapter.deliver_progress(context(one, webhook_job(receiver.url + "/ok")), 1)
        assert time.monotonic() - started < 0.2  # refused at once, no thread held waiting
        worker.join()
        adapter.deliver_progress(context(one, webhook_job(receiver.url + "/ok")), 1)
        assert receiver.most_active == 1 and len(receiver.hits) == 2


def test_an_image_gone_from_storage_fails_the_delivery(settings: Settings) -> None:
    opened = with_settings(settings, outbound_allow="127.0.0.1")
    with outbound_target() as receiver:
        job = webhook_job(receiver.url + "/hook", ["0" * 32])
        deliverer = Deliverer(opened, redis_client(opened), Storage(opened.images_dir),
                              delivery_adapters())
        with pytest.raises(PermanentDeliveryError, match="image 0{32} is no longer in storage"):
            deliverer.deliver_result(job)
        assert receiver.hits == []


def test_deliver_worker_fails_a_missing_image_once_and_queues_busy_webhooks(
        settings: Settings, start_worker: Callable[..., Process]) -> None:
    """In a real deliver worker: a missing image is one log line and no retry; with one
    webhook slot, three slow webhooks are all delivered, one at a time, none given up."""
    worker = start_worker("deliver", env={"IMAGINE_OUTBOUND_ALLOW": "127.0.0.1",
                                          "IMAGINE_WEBHOOK_CONCURRENCY": "1"})
    client = redis_client(settings)
    jobs = JobStore(client, settings.job_ttl)
    app = create_celery(settings)
    name = Storage(settings.images_dir).put(PNG)
    with outbound_target() as receiver:
        missing = jobs.save(webhook_job(receiver.url + "/hook", ["f" * 32]))
        app.send_task(DELIVER_TASK, args=[missing.id])
        slow = [jobs.save(webhook_job(receiver.url + "/slow?seconds=0.5", [name]))
                for _ in range(3)]
        for job in slow:
            app.send_task(DELIVER_TASK, args=[job.id])
        wait_for(lambda: len(receiver.hits) >= 3, 30, message="three webhook deliveries")
        time.sleep(1.0)
        assert sorted(json.loads(hit.body)["job"]["id"] for hit in receiver.hits) == sorted(
            job.id for job in slow)
        assert receiver.most_active == 1
    log = worker.log()
    assert log.count(f"cannot deliver job {missing.id}") == 1, log[-3000:]
    assert "is no longer in storage" in log
    assert not client.hgetall(METRICS_RETRIES_KEY)  # neither a missing image nor a busy slot
