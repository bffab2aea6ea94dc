"""`POST /api/v1/sign`: the prompt URL of a prompt text, signed when IMAGINE_URL_SECRET is set.

What `imagine sign-url` does, for an authenticated caller (the builder page, scripts): the
secret stays on the server. A server with a URL secret but no IMAGINE_API_TOKEN refuses,
because an open signing route would sign anyone's prompt and make the secret pointless.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict

from bots.errors import PromptError
from bots.web import api, tokens
from bots.web.signing import signed_url
from bots.web.state import web_state
from settings.i18n import _

bp = Blueprint("sign_api", __name__, url_prefix="/api/v1")
# The same bearer-token rule and the same JSON errors as every other API route.
bp.before_request(api.authorise)
bp.register_error_handler(api.ApiError, api.api_error)

NO_TOKEN = (_("Signing is off: this server requires signed prompt URLs (IMAGINE_URL_SECRET) "
              "but has no IMAGINE_API_TOKEN, so it cannot tell who may sign. Ask the operator "
              "to set IMAGINE_API_TOKEN, or for a URL made with `imagine sign-url`."))


class SignBody(BaseModel):
    """The prompt text with its flags, as in chat; `--seed random` gives a new image per load."""

    model_config = ConfigDict(extra="forbid")

    prompt: str


@bp.post("/sign")
def sign() -> Response:
    """`{"url": …, "signed": bool}`; 400 for a prompt the grammar refuses, 403 when off."""
    settings = web_state().settings
    body = api.read_body(SignBody, '{"prompt": "a red fox --ar 16:9 --seed 7"}')
    if settings.url_secret is not None and not tokens.required(settings):
        raise api.ApiError(403, NO_TOKEN)
    try:
        url = signed_url(settings, body.prompt)
    except PromptError as exc:
        raise api.ApiError(400, exc.message) from None
    response = jsonify(url=url, signed=settings.url_secret is not None)
    response.headers["Cache-Control"] = "no-store"
    return response
