"""Vary (Region): one-time links to the mask editor, for chats that cannot host a canvas.

A chat answers the Vary (Region) button with `RegionLinks.issue(...)`: an absolute URL on
IMAGINE_PUBLIC_URL holding an unguessable token, valid once for IMAGINE_REGION_LINK_SECONDS.
The token is the capability (like a job id); it is not HMAC-signed because nothing is
derived from it: the grant it stands for (parent job, image, whom to deliver to) lives in
Redis under the token's SHA-256, so a copy of the keyspace cannot be turned back into links.

Redeeming replaces the grant by a marker with the time it had left, in one script, so two
submits of the same page cannot both queue a job and a second one is told the link was used
(not that it expired). A submit the queue refuses puts the grant back (`restore`), so a full
queue never costs the user their link.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import redis
from pydantic import BaseModel

from bots.followups import TITLES, VARY_REGION, parent_image
from settings import Settings
from settings.errors import ImagineError
from settings.i18n import _, ngettext
from tasks.core.jobs import Job, Requester
from tasks.names import REGION_LINK_KEY

TOKEN_BYTES = 24  # 192 random bits, URL-safe base64: 32 characters
LINK_PATH = "/region/{}"
USED = b"used"

# KEYS[1]: the link; ARGV[1]: the marker. The grant, or the marker if used, or nothing.
_REDEEM = """
local grant = redis.call('GET', KEYS[1])
if not grant or grant == ARGV[1] then return grant end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
return grant
"""
# KEYS[1]: the link; ARGV[1]: the marker; ARGV[2]: the grant. Back only if still marked used.
_RESTORE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""


class RegionLinkError(ImagineError):
    """A Vary (Region) link that cannot be used (any more): the page answers 410."""


class LinkExpired(RegionLinkError):
    """Past its lifetime, or never issued (a mistyped or truncated link looks the same)."""


class LinkUsed(RegionLinkError):
    """Already submitted once; each press of Vary (Region) gives one link for one image."""


class RegionGrant(BaseModel):
    """What a link allows: redraw part of image `index` of job `job_id`, for `requester`."""

    job_id: str
    index: int
    requester: Requester
    expires_at: float  # Unix time; Redis' TTL on the record is what enforces it


@dataclass(frozen=True)
class RegionLinks:
    """Issues, shows and redeems Vary (Region) links; one per process, blocking (Redis)."""

    redis: redis.Redis
    settings: Settings

    def issue(self, parent: Job, index: int, requester: Requester) -> str:
        """A one-time URL to paint a region of image `index` (0-based) of `parent`; the job it
        queues is delivered to `requester`. PromptError if that image cannot be varied."""
        parent_image(parent, index)  # a job still drawing, failed or without that image
        token = secrets.token_urlsafe(TOKEN_BYTES)
        seconds = self.settings.region_link_seconds
        grant = RegionGrant(job_id=parent.id, index=index, requester=requester,
                            expires_at=time.time() + seconds)
        self.redis.set(_key(token), grant.model_dump_json(), ex=seconds)
        return self.url(token)

    def url(self, token: str) -> str:
        return self.settings.public_url.rstrip("/") + LINK_PATH.format(token)

    def find(self, token: str) -> RegionGrant:
        """The grant of a link that can still be used; it stays usable."""
        return self._grant(self.redis.get(_key(token)))

    def redeem(self, token: str) -> RegionGrant:
        """The grant of a link, which can never be used again (unless `restore`d)."""
        return self._grant(self.redis.eval(_REDEEM, 1, _key(token), USED))  # type: ignore[arg-type]

    def restore(self, token: str, grant: RegionGrant) -> bool:
        """Make a redeemed link usable again for the rest of its lifetime (the job it was
        redeemed for was refused); False if it expired meanwhile."""
        restored = self.redis.eval(_RESTORE, 1, _key(token), USED,  # type: ignore[arg-type]
                                   grant.model_dump_json())
        return bool(restored)

    @property
    def lifetime(self) -> str:
        """How long a link works, in words: "15 minutes"."""
        seconds = self.settings.region_link_seconds
        if seconds < 120:
            return ngettext("{count} second", "{count} seconds", seconds).format(count=seconds)
        minutes = round(seconds / 60)
        return ngettext("{count} minute", "{count} minutes", minutes).format(count=minutes)

    def _grant(self, raw: bytes | str | None) -> RegionGrant:
        again = _("press {button} again under the image for a new one").format(
            button=_(TITLES[VARY_REGION]))
        if raw is None:
            raise LinkExpired(_("This link has expired (links last {lifetime}): {again}.").format(
                lifetime=self.lifetime, again=again))
        if raw in (USED, USED.decode()):
            raise LinkUsed(_("This link was already used (each link works once): {again}.").format(
                again=again))
        return RegionGrant.model_validate_json(raw)


def _key(token: str) -> str:
    # Only the token's hash is stored: the keyspace (a dump, MONITOR) holds no usable link.
    return REGION_LINK_KEY.format(hashlib.sha256(token.encode()).hexdigest())
