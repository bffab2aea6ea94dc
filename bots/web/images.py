"""`GET /?prompt=…` (Markdown prompt URLs) and `GET /images/<name>.png`.

A prompt URL's image is made once and then served from storage for ever. A miss submits one
job (however many requests arrive at once), waits a little, and answers with a placeholder
PNG when the image is not ready yet: Markdown image proxies give up after a few seconds, and
a placeholder that says "rendering…" is better than a broken image.
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, Response, abort, jsonify, request, send_file

from bots.errors import PromptError
from bots.web import page
from bots.web.language import locale_extra
from bots.web.placeholder import error_png, placeholder_png, preview_placeholder_png
from bots.web.preview_links import latest_preview
from bots.web.query import PromptQuery, cache_key, memo_key, read_query
from bots.web.signing import verify
from bots.web.state import ONE_YEAR, WebState, client_network, wants_json, web_state
from settings.i18n import N_, _
from tasks.core import metrics
from tasks.core.jobs import ImageVerdict, Job, JobStatus, Requester
from tasks.core.queue import format_wait
from tasks.core.storage import Storage
from tasks.errors import JobNotFound, PolicyRefusal, QueueFullError, UserLimitError

bp = Blueprint("images", __name__)

IMMUTABLE = f"public, max-age={ONE_YEAR}, immutable"
# A prompt URL whose image image safety blocked (#15): 451 Unavailable For Legal Reasons.
WITHHELD = N_("This image was withheld by this server's image policy.")
WITHHELD_TITLE = N_("withheld")
RECORD_GRACE = 30.0  # s a claim may exist before its job record does (submit in progress)
MAX_RETRY_AFTER = 60


# The title of an error card, by HTTP status.
REFUSAL_TITLES = {400: N_("cannot draw this"), 403: N_("unsigned URL"),
                  413: N_("request too large"), 414: N_("URL too long"),
                  429: N_("too many new images"), 451: WITHHELD_TITLE, 503: N_("busy, try again")}


def refusal(status: int, message: str, *, retry_after: float | None = None,
            title: str | None = None) -> Response:
    """An error as JSON for scripts, or as a small PNG that shows the message in an embed."""
    if wants_json():
        response = jsonify(error=message, status=status)
    else:
        shown = title or _(REFUSAL_TITLES.get(status, N_("error")))
        response = Response(error_png(message, shown),
                            mimetype="image/png")
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def serve_image(state: WebState, name: str, *, cacheable: bool = True) -> Response:
    """A stored image: strong ETag (its content hash), conditional GET, HEAD, immutable."""
    etag = f'"{name}"'
    cache_control = IMMUTABLE if cacheable else "no-store"
    headers = {"ETag": etag, "Cache-Control": cache_control, "X-Imagine-Image": name}
    state.served.note(name)
    # The name is the content hash, so a matching If-None-Match needs no file access.
    if request.if_none_match.contains(name):
        return Response(status=304, headers=headers)
    if not isinstance(state.storage, Storage):  # a bucket: streamed, or a redirect to it
        assert state.remote is not None
        return state.remote.response(name, headers, cacheable=cacheable)
    response = send_file(state.storage.path(name), mimetype="image/png", etag=False,
                         conditional=True, max_age=None, last_modified=None)
    response.headers.update(headers)
    return response


@bp.get("/images/<name>.png")
def stored_image(name: str) -> Response:
    """One stored image by its content hash."""
    state = web_state()
    if not state.storage.exists(name):
        abort(404, _("No image {name} in storage: check the URL.").format(name=name[:40]))
    return serve_image(state, name)


@bp.get("/")
def prompt_image() -> Response:
    """The image of a prompt URL: cached, drawn now, or a placeholder while it is drawn."""
    state = web_state()
    args = request.args.to_dict(flat=False)
    memo = memo_key(args)
    known = state.memo.get(memo) if memo is not None else None
    if known is not None and state.storage.exists(known):  # no parsing, no Redis
        state.cache_counts.add("hit")
        return serve_image(state, known)
    try:
        query = read_query(args, state.limits)
    except PromptError as exc:
        metrics.record_web(state.redis, "bad_request")
        return refusal(400, exc.message)
    secret = state.secret
    if secret is not None and not verify(secret, query.signing_text(), query.sig):
        metrics.record_web(state.redis, "forbidden")
        what = _("carries a wrong signature") if query.sig else _("is not signed")
        return refusal(403, _("This prompt URL {what}; this server draws only signed URLs. Ask "
                              "its operator for one (`imagine sign-url \"PROMPT\"`).").format(
                                what=what))
    if query.random:
        return _fresh(state, query)
    key = cache_key(query.request, state.model_source(query.request.model))
    entry = state.cache.get(key)
    if entry is not None and entry.image and state.storage.exists(entry.image):
        state.cache_counts.add("hit")
        return _safe_image(state, memo, entry.image, entry.verdict, query.reveal)
    state.cache_counts.add("miss")
    if entry is None or entry.image:  # new, or its file was removed from storage
        refused = _take_token(state)
        if refused is not None:
            return refused
        if entry is not None:
            state.cache.forget(key, entry.job)  # draw it again (same seed, same image)
        new = Job(requester=_requester(), request=query.request)
        entry = state.cache.claim(key, new.id)
        if entry.job == new.id:  # this request won the claim: it, and only it, submits
            try:
                state.queue.submit(new)
            except (QueueFullError, PolicyRefusal) as exc:  # full, or a rule refused it
                state.cache.forget(key, entry.job)
                return _full(state, exc) if isinstance(exc, QueueFullError) else _refused(exc)
    job = _wait(state, entry.job, _wait_seconds(state, query))
    if job is None:
        if time.time() - entry.at > RECORD_GRACE:
            state.cache.forget(key, entry.job)  # the job vanished: the next request retries
            return _placeholder(state, query, None)
        # The request that claimed the key is still saving the record: name its job anyway.
        return _placeholder(state, query, None, claimed=entry.job)
    if job.status is JobStatus.done and job.images and state.storage.exists(job.images[0]):
        _remember(state, key, job, query)
        return _safe_image(state, memo, job.images[0], job.verdict(0), query.reveal)
    if job.status.finished:
        state.cache.forget(key, job.id)
        reason = job.error or _("its file is no longer in storage.")
        return refusal(503, _("The image could not be drawn: {reason} Reload to try again.").format(
                                reason=reason),
                       retry_after=1)
    return _placeholder(state, query, job)


def _remember(state: WebState, key: str, job: Job, query: PromptQuery) -> None:
    """The prompt URL's image is made: its cache entry for ever (with its safety verdict),
    and the gallery (a spoilered image as its blurred copy; a blocked one not at all)."""
    verdict = job.verdict(0)
    state.cache.remember(key, job.id, job.images[0], verdict.action, verdict.blurred)
    shown = job.images[0] if verdict.action == "allow" else verdict.blurred
    if verdict.action != "block" and shown:
        page.record_made(state, query.request.prompt, shown)


def _safe_image(state: WebState, memo: str | None, image: str, verdict: ImageVerdict,
                reveal: bool, *, cacheable: bool = True) -> Response:
    """A prompt URL's image as image safety allows (#15): a blocked one is a 451 card; a
    spoilered one is its blurred copy unless the URL asks for the original (`reveal=1`).
    The memo remembers what these exact parameters were served, never a blocked image."""
    action, blurred = verdict.action, verdict.blurred
    if action == "block" or (action == "spoiler" and not reveal and not (
            blurred and state.storage.exists(blurred))):
        return refusal(451, _(WITHHELD))
    served = blurred if action == "spoiler" and not reveal and blurred else image
    if cacheable:
        _memorise(state, memo, served)
    return serve_image(state, served, cacheable=cacheable)


def _memorise(state: WebState, memo: str | None, image: str) -> None:
    if memo is not None:
        state.memo.put(memo, image)


def _fresh(state: WebState, query: PromptQuery) -> Response:
    """`seed=random`: a new image for every request, never cached."""
    refused = _take_token(state)
    if refused is not None:
        return refused
    try:
        submitted = state.queue.submit(Job(requester=_requester(), request=query.request))
    except QueueFullError as exc:
        return _full(state, exc)
    except PolicyRefusal as exc:
        return _refused(exc)
    job = _wait(state, submitted.job.id, _wait_seconds(state, query))
    if job is not None and job.status is JobStatus.done and job.images:
        return _safe_image(state, None, job.images[0], job.verdict(0), query.reveal,
                           cacheable=False)
    if job is not None and job.status.finished:
        return refusal(503, _("The image could not be drawn: {reason}.").format(
                                reason=job.error or job.status.value),
                       retry_after=1)
    return _placeholder(state, query, job)


def _requester() -> Requester:
    return Requester(platform="web", user=client_network(), extra=locale_extra())


def _full(state: WebState, exc: QueueFullError) -> Response:
    """This client's share of the queue is taken (429), or the whole queue is (503)."""
    if isinstance(exc, UserLimitError):
        metrics.record_web(state.redis, "rate_limited")
        return refusal(429, exc.message, retry_after=_queue_retry(state))
    return refusal(503, exc.message, retry_after=_queue_retry(state))


def _refused(exc: PolicyRefusal) -> Response:
    """A rule of the server's policy refused the prompt: the message chat gives too (403;
    over the daily quota 429 with the seconds to the reset)."""
    title = _("daily limit reached") if exc.status == 429 else _("refused")
    return refusal(exc.status, exc.message, retry_after=exc.retry_after, title=title)


def _take_token(state: WebState) -> Response | None:
    decision = state.limiter.take(client_network())
    if decision.allowed:
        return None
    metrics.record_web(state.redis, "rate_limited")
    return refusal(429, _("Too many new images from your address; try again in {wait}. "
                          "Images already made are not limited.").format(
                            wait=format_wait(decision.retry_after)), retry_after=decision.retry_after)


def _queue_retry(state: WebState) -> float:
    return min(MAX_RETRY_AFTER, state.queue.average_duration())


def _wait_seconds(state: WebState, query: PromptQuery) -> float:
    wanted = state.settings.embed_wait if query.wait is None else query.wait
    return min(wanted, state.settings.max_wait)


def _wait(state: WebState, job_id: str, seconds: float) -> Job | None:
    """The job after waiting up to `seconds` for it to finish (not at all when all waiting
    slots are taken: a thread that waits is a thread that cannot serve a cache hit)."""
    deadline = time.monotonic() + seconds
    if seconds > 0 and state.waiters.acquire(blocking=False):
        try:
            # The request that claimed the key may not have saved the job record yet.
            while state.queue.jobs.find(job_id) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            left = deadline - time.monotonic()
            if left > 0:
                try:
                    for _event in state.queue.watch(job_id, left):
                        pass
                except JobNotFound:
                    pass
        finally:
            state.waiters.release()
    return state.queue.jobs.find(job_id)


def _placeholder(state: WebState, query: PromptQuery, job: Job | None, *,
                 claimed: str | None = None) -> Response:
    """The "rendering…" PNG: never stored by caches, with a hint of when to come back."""
    metrics.record_web(state.redis, "placeholder")
    job_id = job.id if job is not None else claimed
    if job is None:
        eta, detail = 1.0, "starting…"
    elif job.status is JobStatus.running:
        eta = state.queue.average_duration() * (1 - job.progress)
        detail = job.phase or f"drawing: step {job.step} of {job.total_steps or '?'}"
    else:
        position = state.queue.position(job.id) or 1
        wait = state.queue.eta(position, job.request.model)
        # No running worker serves its model: say so, and look again in a job's time.
        eta = wait if wait is not None else state.queue.average_duration()
        detail = _("position {position} in the queue, ready in {wait}").format(
                     position=position, wait=format_wait(wait))
    retry = max(1, min(MAX_RETRY_AFTER, math.ceil(eta)))
    if wants_json():
        response = jsonify(status=job.status.value if job else "queued",
                           job=job_id, detail=detail, retry_after=retry)
        response.status_code = 202
    else:
        request_ = query.request
        preview = latest_preview(state, job)
        png = (placeholder_png(request_.prompt, request_.width, request_.height, detail)
               if preview is None else
               preview_placeholder_png(request_.width, request_.height, detail, preview))
        response = Response(png, mimetype="image/png")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Retry-After"] = str(retry)
    if job_id is not None:
        response.headers["X-Imagine-Job"] = job_id
        response.headers["X-Imagine-Status"] = job.status.value if job else "queued"
    return response
