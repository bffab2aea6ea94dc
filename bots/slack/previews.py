"""Live previews in a Slack status message: an image block Slack fetches from our web server.

Slack cannot take an uploaded file into an edited message, so the preview is a link: the
web's `/api/v1/jobs/<id>/preview.jpg?v=<n>` (n changes with each preview, so Slack fetches
anew). Slack's servers fetch it, and Slack refuses the whole edit when they cannot, so the
block is only added when IMAGINE_PUBLIC_URL is an https address Slack can reach: not
localhost, not a loopback, private or link-local address. Otherwise progress stays text.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from settings.i18n import _
from tasks.core.jobs import Job, JobStatus

PREVIEW_PATH = "/api/v1/jobs/{}/preview.jpg"


def reachable_by_slack(url: str) -> bool:
    """Whether Slack's servers can fetch images under `url`: https, and a host that is
    neither a local name nor an address outside the public internet."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:  # e.g. a malformed IPv6 literal
        return False
    if parts.scheme != "https" or not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." in host  # a bare name ("imagine") only resolves on a local network
    return address.is_global and not address.is_multicast


def preview_block(public_url: str, job: Job) -> dict[str, Any] | None:
    """The image block of the job's latest preview; None when it has none yet, is not
    drawing, or Slack could not fetch it."""
    if job.status is not JobStatus.running or job.preview <= 0:
        return None
    if not reachable_by_slack(public_url):
        return None
    url = f"{public_url.strip().rstrip('/')}{PREVIEW_PATH.format(job.id)}?v={job.preview}"
    return {"type": "image", "block_id": "imagine-preview", "image_url": url,
            "alt_text": _("live preview")}
