"""`POST /api/v1/recall`: the prompt and parameters inside a PNG, for scripts.

The image comes as a data URL or an http(s) URL (fetched through the guarded outbound
requests, like an image prompt's); the answer is the grammar text that draws it again on
this server, everything the PNG recorded, and what had to change to fit this server.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict

from bots.errors import PromptError
from bots.followups import FollowUpLimits
from bots.image_prompts import read_image_reference
from bots.recall import NoParameters, recall_png
from bots.web import api
from bots.web.state import client_network, web_state
from settings.errors import ImagineError
from settings.i18n import _
from tasks.core import metrics
from tasks.core.queue import format_wait

bp = Blueprint("recall_api", __name__, url_prefix="/api/v1")
# The same bearer-token rule and the same JSON errors as every other API route.
bp.before_request(api.authorise)
bp.register_error_handler(api.ApiError, api.api_error)


class RecallBody(BaseModel):
    """POST /api/v1/recall: the image to read."""

    model_config = ConfigDict(extra="forbid")

    image: str


@bp.post("/recall")
def recall() -> Response:
    """The prompt text, parameters and notes recorded in a PNG; 422 when it records none."""
    state = web_state()
    body = api.read_body(RecallBody, '{"image": "data:image/png;base64,…"}')
    if body.image.strip()[:5].lower() != "data:":
        # Fetching a URL is work done for the client: it counts like a submission.
        decision = state.limiter.take(client_network())
        if not decision.allowed:
            metrics.record_web(state.redis, "rate_limited")
            raise api.ApiError(429, _("Too many requests from your address; try again in "
                                      "{wait}.").format(
                                        wait=format_wait(decision.retry_after)),
                               decision.retry_after)
    try:
        data = read_image_reference(state.settings, body.image)
    except ImagineError as exc:  # not a data URL or an allowed http(s) URL, too large, …
        raise api.ApiError(400, exc.message) from None
    try:
        recalled = recall_png(data, state.limits, FollowUpLimits.from_settings(state.settings))
    except NoParameters as exc:
        raise api.ApiError(422, exc.message) from None
    except PromptError as exc:
        raise api.ApiError(400, exc.message) from None
    return jsonify(prompt=recalled.text, parameters=recalled.parameters,
                   notes=list(recalled.notes))
