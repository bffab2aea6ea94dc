"""Delivery to a plain HTTP webhook: for scripts and integrations without a chat platform.

A job submitted with `Requester(platform="webhook", extra={"url": ...})` gets its result
POSTed there as JSON (images inline as base64 and as links). Each POST carries an
`Idempotency-Key` so a receiver can drop the rare duplicate of a crash mid-delivery.
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
import urllib.error
import urllib.request
from typing import Any

from settings import Settings
from tasks.core.delivery import (
    DeliveryContext,
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
)

TIMEOUT = 30


def retry_after_seconds(value: str | None, default: float = 5.0) -> float:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else default


class WebhookDelivery:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def deliver_result(self, ctx: DeliveryContext) -> None:
        job = ctx.job
        images = [
            {"name": name, "seed": seed,
             "url": f"{self.settings.public_url.rstrip('/')}/images/{name}.png",
             "png_base64": base64.b64encode(ctx.storage.read(name)).decode()}
            for name, seed in zip(job.images, job.seeds, strict=True)
        ]
        body = {"event": "result", "job": job.model_dump(mode="json"), "images": images}
        ctx.once("post", lambda: self._post(ctx, body, f"{job.id}:result"))

    def deliver_progress(self, ctx: DeliveryContext, position: int | None) -> None:
        job = ctx.job
        body = {"event": "progress", "id": job.id, "status": job.status.value,
                "step": job.step, "total": job.total_steps, "position": position}
        self._post(ctx, body, f"{job.id}:progress:{job.step}")

    def _post(self, ctx: DeliveryContext, body: dict[str, Any], key: str) -> None:
        url = ctx.job.requester.extra.get("url", "")
        if not url.startswith(("http://", "https://")):
            raise PermanentDeliveryError(f"webhook job {ctx.job.id} has no http(s) url")
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": key,
                     "User-Agent": "imagine-webhook"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                raise RateLimited(retry_after_seconds(exc.headers.get("Retry-After"))) from None
            if exc.code >= 500:
                raise TransientDeliveryError(f"webhook answered {exc.code}") from None
            raise PermanentDeliveryError(f"webhook answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise TransientDeliveryError(f"webhook unreachable: {exc}") from None
