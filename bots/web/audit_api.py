"""`GET /api/v1/audit` for admin tokens.

The audit trail holds every user's prompts: only a token named in IMAGINE_API_ADMINS reads
it (401 without a valid token, 403 for any other token, also when the API is open).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from bots.audit_query import MAX_LIMIT, entries_since, parse_since
from bots.errors import PromptError
from bots.web import api, tokens
from bots.web.state import web_state
from settings.i18n import _
from tasks.policy.audit import AuditLog

bp = Blueprint("audit_api", __name__, url_prefix="/api/v1")
bp.before_request(api.authorise)
bp.register_error_handler(api.ApiError, api.api_error)

DEFAULT_SINCE = "24h"
DEFAULT_LIMIT = 1000


@bp.get("/audit")
def audit() -> Response:
    """The audit entries since `since` (default 24h), oldest first, at most `limit`."""
    settings = web_state().settings
    name = tokens.current() or tokens.token_name(settings, request.headers.get("Authorization"))
    if name is None:
        raise api.ApiError(401, _("The audit trail needs an admin token: `Authorization: "
                                  "Bearer <token>` of a token named in IMAGINE_API_ADMINS."))
    if not tokens.is_admin(settings, name):
        raise api.ApiError(403, _("The token {name} may not read the audit trail: only tokens "
                                  "named in IMAGINE_API_ADMINS may.").format(name=name))
    since_text = request.args.get("since", DEFAULT_SINCE)
    try:
        since = parse_since(since_text)
        limit = _limit(request.args.get("limit"))
    except PromptError as exc:
        raise api.ApiError(400, exc.message) from None
    log = AuditLog(settings, web_state().redis)
    entries = [entry.model_dump() for entry in entries_since(log, since, limit)]
    response = jsonify(entries=entries, count=len(entries), since=since)
    response.headers["Cache-Control"] = "no-store"
    return response


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise PromptError(_("limit must be a whole number from 1 to {most}; got \"{value}\".")
                          .format(most=MAX_LIMIT, value=value))
    return int(value)

