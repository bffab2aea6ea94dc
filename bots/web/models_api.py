"""`GET /api/v1/models`: what a job may name on this server (models with their catalogue
entries, LoRAs, embeddings, ControlNet kinds), for scripts and UIs to offer."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from bots.catalogue import listing
from bots.web import api
from bots.web.state import web_state

bp = Blueprint("models_api", __name__, url_prefix="/api/v1")
# The same bearer-token rule and the same JSON errors as every other API route.
bp.before_request(api.authorise)
bp.register_error_handler(api.ApiError, api.api_error)


@bp.get("/models")
def models() -> Response:
    """The listing, read anew each time: a LoRA dropped into its folder is listed at once."""
    response = jsonify(listing(web_state().settings).as_json())
    response.headers["Cache-Control"] = "no-store"
    return response
