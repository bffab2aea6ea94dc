"""Delivery to a plain HTTP webhook: for scripts and integrations without a chat platform.

A job submitted with `Requester(platform="webhook", extra={"url": ...})` gets its result
POSTed there as JSON (images inline as base64 and as links). Each POST carries an
`Idempotency-Key` so a receiver can drop the rare duplicate of a crash mid-delivery, and,
with IMAGINE_WEBHOOK_SECRET set, a signature: `X-Imagine-Signature: v1=<hex>`, the
HMAC-SHA256 of `<X-Imagine-Timestamp>.<body>` (README: "Webhooks").

The URL is a user's: it goes out through `tasks.core.outbound` (public addresses only, the
address checked is the one connected to, one deadline, a capped reply), checked when the job
is submitted and again at each send, since DNS may have changed in between. Redirects are
not followed. At most IMAGINE_WEBHOOK_CONCURRENCY posts run at once in a deliver process; a
delivery that finds them all busy is tried again a moment later instead of holding a thread,
so slow webhooks never starve Slack and Discord deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bots.web.image_view import image_views
from settings import Settings
from settings.i18n import N_
from tasks.core import outbound
from tasks.core.delivery import (
    AdapterBusy,
    DeliveryContext,
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
    retry_after_seconds,
)
from tasks.core.outbound import OutboundPolicy
from tasks.errors import OutboundError, OutboundTooLarge

TIMESTAMP_HEADER = "X-Imagine-Timestamp"
SIGNATURE_HEADER = "X-Imagine-Signature"
SIGNATURE_VERSION = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 of `<timestamp>.<body>`, keyed with the secret."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def signature_headers(settings: Settings, body: bytes, now: float | None = None
                      ) -> dict[str, str]:
    """The signature headers of one POST (signed when sent, so a retry is signed afresh);
    none when IMAGINE_WEBHOOK_SECRET is unset."""
    if settings.webhook_secret is None:
        return {}
    timestamp = int(time.time() if now is None else now)
    secret = settings.webhook_secret.get_secret_value()
    return {TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body)}


_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def process_slots(size: int) -> threading.BoundedSemaphore:
    """This process's webhook slots: one semaphore, however many adapters the deliver
    threads happen to build at once."""
    with _slots_lock:
        return _slots.setdefault(size, threading.BoundedSemaphore(size))


def check_webhook_url(settings: Settings, url: str) -> None:
    """At submit: raise an OutboundError (a message for the user) unless `url` may be used."""
    outbound.check_url(url, OutboundPolicy.from_settings(settings), what=N_("webhook"))


class WebhookDelivery:
    def __init__(self, settings: Settings, policy: OutboundPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or OutboundPolicy.from_settings(settings)
        self._slots = process_slots(settings.webhook_concurrency)

    def deliver_result(self, ctx: DeliveryContext) -> None:
        job = ctx.job
        base = self.settings.public_url.rstrip("/")
        # As the job view shows them (#15): a blocked image has no url, name nor bytes; a
        # spoilered one is its blurred copy, the original a link away (original_url).
        images = image_views(job, lambda name: f"{base}/images/{name}.png")
        for image, verdict in zip(images, (job.verdict(i) for i in range(len(images))),
                                  strict=True):
            sent = verdict.blurred if verdict.action == "spoiler" else image["name"]
            if sent:
                image["png_base64"] = base64.b64encode(ctx.storage.read(sent)).decode()
        shown = {**job.model_dump(mode="json"), "images": [image["name"] for image in images]}
        body = {"event": "result", "job": shown, "images": images}
        ctx.once("post", lambda: self._post(ctx, body, f"{job.id}:result"))

    def deliver_progress(self, ctx: DeliveryContext, position: int | None) -> None:
        job = ctx.job
        body = {"event": "progress", "id": job.id, "status": job.status.value,
                "step": job.step, "total": job.total_steps, "position": position}
        self._post(ctx, body, f"{job.id}:progress:{job.step}")

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise AdapterBusy(f"all {self.settings.webhook_concurrency} webhook slots of this "
                              "process are busy (IMAGINE_WEBHOOK_CONCURRENCY)")
        try:
            yield
        finally:
            self._slots.release()

    def _post(self, ctx: DeliveryContext, body: dict[str, Any], key: str) -> None:
        url = ctx.job.requester.extra.get("url", "")
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   "User-Agent": "imagine-webhook", **signature_headers(self.settings, data)}
        with self._slot():
            try:
                response = outbound.request("POST", url, policy=self.policy, what=N_("webhook"),
                                            body=data, headers=headers)
            except OutboundTooLarge as exc:  # the answer counts; its long body does not
                _check_status(exc.status, exc.headers)
                return
            except OutboundError as exc:
                error = TransientDeliveryError if exc.retryable else PermanentDeliveryError
                raise error(f"job {ctx.job.id}: {exc.message}") from None
        _check_status(response.status, response.headers)


def _check_status(status: int, headers: Any) -> None:
    """A 2xx is delivered; 429 (and 503 with Retry-After) waits as told; other 5xx and 408
    are retried; a redirect or another 4xx is the receiver's final word."""
    if 200 <= status < 300:
        return
    if status == 429 or (status == 503 and headers.get("Retry-After")):
        raise RateLimited(retry_after_seconds(headers.get("Retry-After")), "by the webhook")
    if 300 <= status < 400:
        raise PermanentDeliveryError(
            f"webhook answered {status} (a redirect to {headers.get('Location', '?')}); "
            "webhooks are not redirected: submit the final URL")
    if status >= 500 or status == 408:
        raise TransientDeliveryError(f"webhook answered {status}")
    raise PermanentDeliveryError(f"webhook answered {status}")
