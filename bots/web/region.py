"""Vary (Region): the mask editor behind the one-time links chats hand out (bots.region).

`GET /region/<token>` shows the image with a canvas over it where the user paints the part
to redraw, and the prompt to edit; `POST /region/<token>` takes
`{"mask": "data:image/png;base64,…", "prompt": "…"}` (white = redraw, the image's size) and
queues the inpaint job for the requester the link was issued to, so the chat delivers it
where the button was pressed.

Order of a submit: everything is checked first (link, body, prompt, mask), then the link is
redeemed in one atomic step (a second submit is told it was used), then the job is queued;
a queue that refuses it puts the link back, so the user can try again with the same page.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re

import redis
from flask import Blueprint, Response, jsonify, render_template, url_for
from pydantic import BaseModel, ConfigDict

from bots.errors import PromptError
from bots.followups import VARY_REGION, parent_image
from bots.grammar import parse
from bots.limits import Limits
from bots.region import RegionGrant, RegionLinkError, RegionLinks
from bots.web.api import ApiError, error_response, read_body
from bots.web.job_view import absolute_url
from bots.web.page_headers import page_response
from bots.web.state import WebState, web_state
from generator.errors import ImageRejected
from generator.request import ImageRequest
from generator.source_images import prepare_mask
from settings.i18n import _
from tasks.core.jobs import Job
from tasks.core.queue import Submitted
from tasks.errors import PolicyRefusal, QueueFullError, UserLimitError

bp = Blueprint("region", __name__, url_prefix="/region", template_folder="templates",
               static_folder="static", static_url_path="/static")

_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,(?P<data>[A-Za-z0-9+/=\s]*)", re.ASCII)
QUEUED = _("Queued: the new image will appear where you pressed the button.")
MAX_RETRY_AFTER = 60.0


class Gone(Exception):
    """The link, its job or its image can no longer be used: 410 with `message`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RegionBody(BaseModel):
    """POST /region/<token>: the painted mask as a data URL and the (edited) prompt."""

    model_config = ConfigDict(extra="forbid")

    mask: str
    prompt: str


class Target:
    """What a link points at: the grant, its parent job and that image's name, seed, size."""

    def __init__(self, state: WebState, token: str) -> None:
        try:
            self.grant: RegionGrant = RegionLinks(state.redis, state.settings).find(token)
        except RegionLinkError as exc:
            raise Gone(exc.message) from None
        parent = state.queue.jobs.find(self.grant.job_id)
        if parent is None:
            raise Gone(_("The image this link is for is no longer kept (its job record "
                         "expired): draw it again and press Vary (Region) on the new one."))
        try:
            self.source, self.seed, (self.width, self.height) = parent_image(
                parent, self.grant.index)
        except PromptError as exc:
            raise Gone(exc.message) from None
        if not state.storage.exists(self.source):
            raise Gone(_("The image this link is for is no longer stored: draw it again and "
                         "press Vary (Region) on the new one."))
        self.parent = parent


@bp.get("/<token>")
def page(token: str) -> Response:
    """The mask editor for one link; 410 with the reason once the link cannot be used."""
    state = web_state()
    try:
        target = Target(state, token)
    except Gone as exc:
        return _page(render_template("region.html", error=exc.message), 410)
    html = render_template(
        "region.html", error=None, image_url=state.image_url(target.source),
        width=target.width, height=target.height,
        prompt=_prompt_text(target.parent.request),
        lifetime=RegionLinks(state.redis, state.settings).lifetime,
        api=target.grant.requester.platform == "api")
    return _page(html, 200)


@bp.post("/<token>")
def submit(token: str) -> tuple[Response, int] | Response:
    """Queue the inpaint job for a painted mask: 202, or 400/410/429/503 with the reason."""
    state = web_state()
    links = RegionLinks(state.redis, state.settings)
    try:
        body = read_body(RegionBody, '{"mask": "data:image/png;base64,…", "prompt": "…"}')
        target = Target(state, token)
        image_request = _request(state, target, body)
        try:  # from here on the link is spent
            links.redeem(token)
        except RegionLinkError as exc:  # another submit of the same page came first
            raise Gone(exc.message) from None
        submitted = _queue(state, links, token, target.grant, Job(
            requester=target.grant.requester, request=image_request, parent=target.parent.id,
            action=VARY_REGION))
    except Gone as exc:
        return _no_store(error_response(410, exc.message))
    except ApiError as exc:
        return _no_store(error_response(exc.status, exc.message, exc.retry_after))
    status_url = absolute_url(state, url_for("api.get_job", job_id=submitted.job.id))
    return _no_store(jsonify(job=submitted.job.id, status_url=status_url, message=QUEUED,
                             position=submitted.position)), 202


def _queue(state: WebState, links: RegionLinks, token: str, grant: RegionGrant,
           job: Job) -> Submitted:
    """Submit the job of a redeemed link; if the queue refuses it, or submitting fails
    (Redis away), the link is given back for the rest of its lifetime."""
    try:
        return state.queue.submit(job)
    except QueueFullError as exc:
        links.restore(token, grant)
        status = 429 if isinstance(exc, UserLimitError) else 503
        raise ApiError(status, _("{reason} This link still works until it expires.").format(
                                   reason=exc.message),
                      min(MAX_RETRY_AFTER, state.queue.average_duration())) from None
    except PolicyRefusal as exc:  # the prompt, the user or the quota: as on every front end
        links.restore(token, grant)
        raise ApiError(exc.status, exc.message, exc.retry_after) from None
    except Exception:
        with contextlib.suppress(redis.RedisError):  # the same Redis may be what failed
            links.restore(token, grant)
        raise


def _request(state: WebState, target: Target, body: RegionBody) -> ImageRequest:
    """The inpaint request: the prompt read by the grammar, the mask checked and stored."""
    prompt, negative = _prompt(body.prompt, state.limits)
    try:
        mask = prepare_mask(_data_url_bytes(body.mask), size=(target.width, target.height),
                            max_bytes=state.settings.max_upload_bytes)
    except ImageRejected as exc:  # not an image, the wrong size, nothing painted
        raise ApiError(400, exc.message) from None
    mask_name = state.storage.put(mask)
    parent = target.parent.request.model_copy(update={"negative_prompt": negative})
    # A new seed, as Vary (Subtle/Strong) draw anew: the same mask twice gives two choices.
    return parent.inpainted(target.source, mask_name, None, target.width, target.height,
                            prompt)


def _prompt(text: str, limits: Limits) -> tuple[str, str]:
    """(prompt, negative prompt) from the editor's text: words and --no only, since the
    size, seed and sampling of a region's redraw are the image's own."""
    try:
        parsed = parse(text, limits)
    except PromptError as exc:
        raise ApiError(400, exc.message) from None
    words_only = parse(parsed.prompt, limits).model_copy(
        update={"negative_prompt": parsed.negative_prompt})
    if parsed != words_only:
        raise ApiError(400, _("Only the prompt's words and --no can change here: the size, "
                              "seed and sampling stay the image's own; remove the other flags."))
    return parsed.prompt, parsed.negative_prompt


def _prompt_text(request_: ImageRequest) -> str:
    """The parent's prompt as the editor shows it: its words, and --no if it had one."""
    if not request_.negative_prompt:
        return request_.prompt
    return f"{request_.prompt} --no {request_.negative_prompt}"


def _data_url_bytes(value: str) -> bytes:
    match = _DATA_URL.fullmatch(value.strip())
    if match is None:
        raise ApiError(400, _("mask must be a data URL of a PNG (data:image/png;base64,…), not "
                              "{value!r}.").format(value=value[:30]))
    try:
        return base64.b64decode(re.sub(r"\s", "", match["data"]), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, _("mask is not valid base64 after data:image/…;base64,.")) from None


def _page(html: str, status: int) -> Response:
    """An editor page: nothing loaded from elsewhere, never cached, never a referrer (the
    page's URL is the link itself)."""
    response = page_response(html, status, web_state().settings)
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
