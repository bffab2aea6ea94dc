"""What a request may send, checked before any of it is read: a body limit per route and a
cap on the query string.

Routes that take images accept two of them as data URLs (`IMAGINE_MAX_UPLOAD_BYTES` each,
base64: 4/3 of that) plus the JSON around them; Slack's endpoint takes Slack-sized payloads;
every other route a small body. A declared `Content-Length` over the limit is a 413 before a
byte of the body is read; a body without one (chunked) is read through a stream that stops
at the limit. The query string is capped from `IMAGINE_MAX_PROMPT_LENGTH`: a full-length CJK
prompt and negative prompt, percent-encoded (9 bytes a character), plus the other parameters.
"""

from __future__ import annotations

import math

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge, RequestURITooLarge

from settings import Settings
from settings.i18n import _

# Endpoints whose body may hold images: add a route here when it takes uploads.
IMAGE_ENDPOINTS = frozenset({"api.create_job", "api.act_on_job", "region.submit",
                             "recall_api.recall"})
SLACK_ENDPOINTS = frozenset({"slack_events"})
IMAGES_PER_BODY = 2
SMALL_BODY = 64 * 1024
SLACK_BODY = 1024 * 1024  # Slack's payloads are a few KiB; a modal with blocks stays far under
DATA_URL_PREFIX = 64  # "data:image/png;base64," and the JSON quotes around it
ENCODED_CHAR = 9  # one CJK character as UTF-8 (3 bytes), percent-encoded
JSON_CHAR = 12  # one character outside ASCII as a JSON surrogate pair of \uXXXX escapes
PARAMETER_ROOM = 4096  # seed, ar, size, steps, cfg, model, sampler, sig, wait and their names


def image_body_limit(settings: Settings) -> int:
    """Two data-URL images and JSON fields (prompt and negative prompt escaped) around them."""
    image = 4 * math.ceil(settings.max_upload_bytes / 3) + DATA_URL_PREFIX
    text = 2 * JSON_CHAR * settings.max_prompt_length + PARAMETER_ROOM
    return IMAGES_PER_BODY * image + max(SMALL_BODY, text)


def query_limit(settings: Settings) -> int:
    """The longest query string: prompt and `no` at full length in CJK, plus parameters."""
    return 2 * ENCODED_CHAR * settings.max_prompt_length + PARAMETER_ROOM


def body_limit(settings: Settings, endpoint: str | None) -> int:
    if endpoint in IMAGE_ENDPOINTS:
        return image_body_limit(settings)
    if endpoint in SLACK_ENDPOINTS:
        return SLACK_BODY
    return SMALL_BODY


def largest_body(settings: Settings) -> int:
    """What the WSGI server itself may accept: the largest route's limit."""
    return max(image_body_limit(settings), SLACK_BODY, SMALL_BODY)


def check_request(settings: Settings) -> None:
    """Before every view: refuse what is too large, and cap what a chunked body may send."""
    if len(request.query_string) > query_limit(settings):
        raise RequestURITooLarge(
            _("The query string is {length} bytes; the limit is {query_limit} "
              "(prompts of at most {max_prompt_length} characters).").format(
                length=len(request.query_string), query_limit=query_limit(settings),
                max_prompt_length=settings.max_prompt_length))
    limit = body_limit(settings, request.endpoint)
    request.max_content_length = limit
    length = request.content_length
    if length is not None and length > limit:
        raise RequestEntityTooLarge(
            _("The body is {length} bytes; this route takes at most {limit}.").format(
                length=length, limit=limit))
    if length is None and request.environ.get("wsgi.input_terminated"):
        # A body without Content-Length (chunked): Werkzeug's stream would stop quietly at
        # the limit and hand the view a truncated body; read one byte past it to tell.
        request.max_content_length = limit + 1
        if len(request.get_data(cache=True)) > limit:
            raise RequestEntityTooLarge(_("The body is over this route's {limit} bytes.").format(
                                            limit=limit))
