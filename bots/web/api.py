"""The REST API for scripts: `/api/v1/jobs` to submit (a prompt, an image prompt, an inpaint
with a mask), poll, cancel and follow up (the chat buttons: `/api/v1/jobs/<id>/actions`); the
OpenAPI document.

The same jobs as every other front end: the body is read by the prompt grammar, the job goes
through `JobQueue.submit`, and a `webhook` URL turns the job into one that the webhook
delivery adapter posts back when it is done.
"""

from __future__ import annotations

import hmac
import math
from typing import TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bots.errors import PromptError
from bots.followups import (
    ACTIONS,
    PAN,
    ZOOM_OUT,
    FollowUpLimits,
    JobNotReady,
    NoImages,
    follow_up,
)
from bots.grammar import fields_with_control, given_strength
from bots.image_prompts import (
    Prepared,
    controlled,
    drawn_from,
    read_image_reference,
    split_image_urls,
)
from bots.model_flags import Control, needs_control_image
from bots.web import tokens
from bots.web.job_view import job_view
from bots.web.language import locale_extra
from bots.web.openapi_page import openapi_document
from bots.web.purge import purged
from bots.web.state import WebState, client_address, client_network, web_state
from bots.web.webhook_delivery import check_webhook_url
from generator.request import ImageRequest
from generator.source_images import mask_for, prepare_source
from settings.errors import ImagineError
from settings.i18n import _
from tasks.core import metrics
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import format_wait
from tasks.errors import JobNotFound, PolicyRefusal, QueueFullError, UserLimitError

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_WEBHOOK_URL = 2000
BodyT = TypeVar("BodyT", bound=BaseModel)


class JobBody(BaseModel):
    """POST /api/v1/jobs: prompt text (flags allowed inline) and/or the grammar's fields."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    seed: int | None = None
    ar: str | None = None
    size: str | None = None
    steps: int | None = None
    cfg: float | None = None
    no: str | None = None
    n: int | None = None
    model: str | None = None
    sampler: str | None = None
    strength: float | None = None
    iw: float | None = None
    lora: str | list[str] | None = None  # "name:0.8,other" or a list of such
    cn: str | None = None  # ControlNet kind[:weight]; needs control_image
    raw: bool | None = None  # draw the prompt as written, untranslated (#16)
    enhance: bool | None = None  # a language model expands the prompt first (#16)
    webhook: str | None = None
    image: str | None = None  # a data URL or an http(s) URL: an image prompt
    mask: str | None = None  # with image: the white parts are redrawn (inpaint)
    control_image: str | None = None  # like image: the control image of `cn`


class ActionBody(BaseModel):
    """POST /api/v1/jobs/<id>/actions: what to do with which image (0-based: U1 is 0)."""

    model_config = ConfigDict(extra="forbid")

    action: str
    index: int = Field(default=0, ge=0, strict=True)
    factor: float | None = None  # zoom_out: 1.5 or 2 (default 2)
    direction: str | None = None  # pan: left, right, up or down


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@bp.errorhandler(ApiError)
def api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.message, exc.retry_after)


def error_response(status: int, message: str, retry_after: float | None = None) -> Response:
    response = jsonify(error=message, status=status)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="imagine"'
    return response


@bp.before_request
def authorise() -> None:
    settings = web_state().settings
    if not tokens.required(settings) or request.endpoint == "api.openapi":
        return
    name = tokens.token_name(settings, request.headers.get("Authorization"))
    if name is not None:
        tokens.remember(name)  # the job's user (api:<name>) and owner
    else:
        raise ApiError(401, _("This API needs `Authorization: Bearer <IMAGINE_API_TOKEN>`; ask "
                              "the operator for the token."))


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API."""
    return jsonify(openapi_document(web_state().limits))


@bp.post("/jobs")
def create_job() -> tuple[Response, int, dict[str, str]]:
    """Submit a job; 202 with its id, place in the queue and links."""
    state = web_state()
    body = read_body(JobBody, '{"prompt": "a red fox --ar 16:9"}')
    urls, rest = split_image_urls(body.prompt)
    fields = body.model_dump(exclude={"webhook", "image", "mask", "control_image"},
                             exclude_none=True)
    try:
        control = fields_with_control({**fields, "prompt": rest}, state.limits, image=True)[1]
        body = _placed(body.model_copy(update={"prompt": rest}), urls, control)
        image_request = fields_with_control({**fields, "prompt": rest}, state.limits,
                                            image=body.image is not None)[0]
    except PromptError as exc:
        raise ApiError(400, exc.message) from None
    requester = Requester(platform="api", user=_caller(), extra=locale_extra())
    if body.webhook is not None:
        if len(body.webhook) > MAX_WEBHOOK_URL:
            raise ApiError(400, _("webhook must be a URL of at most {most} "
                                  "characters.").format(most=MAX_WEBHOOK_URL))
        try:  # checked again at each send: DNS may change in between
            check_webhook_url(state.settings, body.webhook)
        except ImagineError as exc:  # an OutboundError: which rule, and what to do
            raise ApiError(400, exc.message) from None
        requester = Requester(platform="webhook", user=_caller(),
                              extra={"url": body.webhook})
    if body.image is None and body.control_image is None:
        return _submit(state, Job(requester=requester, request=image_request, owner=_owner()))
    # Reading an image (a URL fetched, a large one decoded) is work done for the client: it
    # is admitted by the rate limit first, and counts as this submission.
    _admit(state)
    prepared = (_with_image(state, image_request, body.image, body.mask)
                if body.image is not None else Prepared(image_request, ()))
    if control is not None and body.control_image is not None:
        prepared = _with_control(state, prepared, control, body)
    return _submit(state, Job(requester=requester, request=prepared.request, owner=_owner(),
                              notes=list(prepared.notes)), admitted=True)


def _placed(body: JobBody, urls: list[str], control: Control | None) -> JobBody:
    """The body with the image URLs that started its prompt as `image` (and, with `cn` and
    no `control_image`, as chat does: one URL is the control image, of two the second);
    PromptError when the images and `cn` do not go together."""
    if control is not None and body.control_image is None and body.image is None and urls:
        if len(urls) > 2:
            raise PromptError(_("The prompt starts with {count} image URLs: with cn give "
                                "one (the control image) or two (the image prompt, then it).").format(
                                  count=len(urls)))
        first = urls[0] if len(urls) == 2 else None
        return body.model_copy(update={"image": first, "control_image": urls[-1]})
    if urls:  # Midjourney style, as in chat: the image's URL first in the prompt
        if len(urls) > 1 or body.image is not None:
            raise PromptError(_("Give one image: as `image`, or one URL first in the prompt."))
        body = body.model_copy(update={"image": urls[0]})
    if body.mask is not None and body.image is None:
        raise PromptError(_("mask needs image: send the image to redraw parts of as `image`, "
                            "and the mask (white = redraw) as `mask`."))
    if control is not None and body.control_image is None:
        raise needs_control_image(control)
    if control is None and body.control_image is not None:
        raise PromptError(_("control_image needs cn: say which ControlNet it guides, e.g. "
                            "\"cn\": \"canny\" (or --cn canny in the prompt)."))
    if body.control_image is not None and body.mask is not None:
        raise PromptError(_("control_image does not go with mask: an inpaint takes no "
                            "ControlNet; send one or the other."))
    return body


def _with_control(state: WebState, prepared: Prepared, control: Control,
                  body: JobBody) -> Prepared:
    """`prepared` guided by the body's control_image; a 400 when it is unusable."""
    assert body.control_image is not None
    try:
        data = read_image_reference(state.settings, body.control_image)
        return controlled(prepared, control, data, state.limits, state.settings,
                          state.storage, keep_size=body.image is not None)
    except ImagineError as exc:
        raise ApiError(400, exc.message) from None


def _with_image(state: WebState, request: ImageRequest, image: str,
                mask: str | None) -> Prepared:
    """The request drawn from `image` (img2img), or with the parts `mask` paints white
    redrawn (inpaint, at the image's own size); a 400 with the reason when one is unusable."""
    settings, storage = state.settings, state.storage
    try:
        data = read_image_reference(settings, image)
        if mask is None:
            return drawn_from(request, data, state.limits, settings, storage)
        if given_strength(request) is not None:
            raise PromptError(_("strength and iw do not apply with a mask: the masked part is "
                                "drawn anew, the rest is kept."))
        # Only the masked part is drawn, at full resolution around it: the image keeps its
        # size up to the largest the server handles.
        source = prepare_source(data, max_bytes=settings.max_upload_bytes,
                                max_pixels=settings.max_upscale_pixels)
        painted = mask_for(read_image_reference(settings, mask), source,
                           max_bytes=settings.max_upload_bytes)
    except ImagineError as exc:  # not an image, too large, a URL not allowed, wrong mask
        raise ApiError(400, exc.message) from None
    inpaint = request.inpainted(storage.put(source.png), storage.put(painted), request.seed,
                                source.width, source.height)
    return Prepared(inpaint, source.notes)


@bp.post("/jobs/<job_id>/actions")
def act_on_job(job_id: str) -> tuple[Response, int, dict[str, str]]:
    """A chat button's operation on image `index` (0-based) of a finished job: 202 with the
    new job."""
    state = web_state()
    body = read_body(ActionBody, '{"action": "upscale", "index": 0}')
    if body.action not in ACTIONS:
        raise ApiError(400, _("action must be one of {actions}; got {action!r}.").format(
                                actions=', '.join(ACTIONS), action=body.action))
    if body.factor is not None and body.action != ZOOM_OUT:
        raise ApiError(400, _("factor applies to zoom_out only (1.5 or 2), not {action}.").format(
                                action=body.action))
    if body.direction is not None and body.action != PAN:
        raise ApiError(400, _("direction applies to pan only (left, right, up or down), not "
                              "{action}.").format(action=body.action))
    parent = _find(state, job_id)
    try:
        image_request = follow_up(parent, body.index, body.action,
                                  FollowUpLimits.from_settings(state.settings),
                                  factor=body.factor, direction=body.direction)
    except (JobNotReady, NoImages) as exc:
        raise ApiError(409, exc.message) from None
    except PromptError as exc:
        raise ApiError(400, exc.message) from None
    return _submit(state, Job(requester=Requester(platform="api", user=_caller()),
                              request=image_request, parent=parent.id, action=body.action,
                              owner=_owner()))


def read_body(model: type[BodyT], example: str) -> BodyT:
    """The JSON body validated by `model`; a 400 naming the first wrong field."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ApiError(400, _("Send a JSON object, e.g. {example}, with Content-Type: "
                              "application/json.").format(example=example))
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}.") from None


def _admit(state: WebState) -> None:
    """Take this client's share of the rate limit, or a 429."""
    decision = state.limiter.take(client_network())
    if not decision.allowed:
        metrics.record_web(state.redis, "rate_limited")
        raise ApiError(429, _("Too many jobs from your address; try again in {wait}.").format(
                                wait=format_wait(decision.retry_after)), decision.retry_after)


def _submit(state: WebState, job: Job, *,
            admitted: bool = False) -> tuple[Response, int, dict[str, str]]:
    """Admit (unless done already) and queue `job` for this client: 202 with its view, or
    429/503."""
    if not admitted:
        _admit(state)
    try:
        submitted = state.queue.submit(job)
    except QueueFullError as exc:
        over_share = isinstance(exc, UserLimitError)  # this client's jobs, not the queue
        raise ApiError(429 if over_share else 503, exc.message,
                       min(60.0, state.queue.average_duration())) from None
    except PolicyRefusal as exc:  # 403; over the daily quota 429 with the seconds to reset
        raise ApiError(exc.status, exc.message, exc.retry_after) from None
    body_out = job_view(state, submitted.job, position=submitted.position,
                        eta=submitted.eta_seconds)
    return jsonify(body_out), 202, {"Location": body_out["links"]["self"]}


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """A job's status, progress, place in the queue and image URLs."""
    state = web_state()
    return jsonify(job_view(state, _find(state, job_id)))


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel a job: a queued one never runs, a running one stops at its next step."""
    state = web_state()
    job = _find(state, job_id)
    if job.owner is None or not hmac.compare_digest(job.owner.encode(), _owner().encode()):
        # Not theirs: as if it did not exist (reading and following up stay open to the id).
        raise ApiError(404, _("No job {job_id} of yours: only whoever created it may cancel it.").format(
                                job_id=job_id))
    if job.status.finished:
        if request.args.get("purge") in ("1", "true"):  # delete its images (the Delete button)
            return jsonify({**job_view(state, purged(state, job.id, _caller())), "deleted": True})
        raise ApiError(409, _("Job {job_id} already finished ({status}); nothing to cancel "
                              "(?purge=1 deletes its images).").format(
                                job_id=job.id, status=job.status.value))
    try:
        job = state.queue.cancel(job_id)
    except JobNotFound as exc:
        raise ApiError(404, exc.message) from None
    view = job_view(state, job)
    view["cancel_requested"] = job.status is not JobStatus.cancelled
    return jsonify(view)


def _owner() -> str:
    """Who is asking: the API token's holder when a token is required, else the address."""
    name = tokens.current()
    if name is not None:
        return tokens.owner_of(web_state().settings, name)
    return "address:" + client_address()


def _caller() -> str:
    """Whom a job is attributed to (quotas, the audit trail): the name of the caller's API
    token, else (an open API) the caller's address."""
    return tokens.current() or client_network()


def _find(state: WebState, job_id: str) -> Job:
    try:
        return state.queue.jobs.get(job_id)
    except JobNotFound as exc:
        raise ApiError(404, exc.message) from None
    except ImagineError as exc:  # pragma: no cover - defensive: any other user-facing error
        raise ApiError(400, exc.message) from None
