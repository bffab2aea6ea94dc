"""The OpenAPI description of `GET /api/v1/audit` and of `?purge=1` on
`DELETE /api/v1/jobs/{job_id}` (bots/web/audit_api.py), merged by bots/web/openapi_page.py."""

from __future__ import annotations

import copy
from typing import Any

from bots.audit_query import MAX_LIMIT

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_TEXT = {"type": "string"}
_ENTRY = {
    "type": "object",
    "required": ["event", "at", "user", "where", "job", "prompt", "outcome", "id"],
    "properties": {
        "event": {"type": "string", "description": "job.submitted, job.done, job.failed, "
                  "job.cancelled, policy.refused, image.flagged, image.blocked, "
                  "image.reported, image.deleted, image.revealed, admin.<command>"},
        "at": {"type": "number", "description": "Epoch seconds."},
        "user": _TEXT, "where": _TEXT, "job": _TEXT, "prompt": _TEXT, "negative": _TEXT,
        "model": _TEXT, "loras": {"type": "array", "items": _TEXT}, "operation": _TEXT,
        "outcome": _TEXT, "nsfw_score": {"type": ["number", "null"]},
        "rule": {"type": "string", "description": "The policy rule that decided."},
        "actor": {"type": "string", "description": "Who acted when not the user."},
        "detail": _TEXT, "id": {"type": "string", "description": "The stream id."},
    },
}

AUDIT_PATHS: dict[str, Any] = {
    "/api/v1/audit": {"get": {
        "operationId": "readAudit",
        "summary": "The audit trail (every job and policy decision), oldest first; for "
                   "tokens named in IMAGINE_API_ADMINS.",
        "security": [{"bearer": []}],
        "parameters": [
            {"name": "since", "in": "query", "required": False,
             "description": "30m, 12h, 7d, or an ISO date / date and time (UTC unless it "
                            "names a zone); default 24h.",
             "schema": {"type": "string"}},
            {"name": "limit", "in": "query", "required": False,
             "description": "At most this many entries (default 1000).",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
        ],
        "responses": {
            "200": {"description": "The entries.", "content": {"application/json": {"schema": {
                "type": "object", "required": ["entries", "count", "since"],
                "properties": {"entries": {"type": "array", "items": _ENTRY},
                               "count": {"type": "integer"},
                               "since": {"type": "number"}}}}}},
            "400": {"description": "since or limit is not valid.", "content": _ERROR},
            "401": {"description": "No valid bearer token.", "content": _ERROR},
            "403": {"description": "The token is not an admin token.", "content": _ERROR},
            "413": {"description": "The body is larger than this route takes.",
                    "content": _ERROR},
            "414": {"description": "The query string is too long.", "content": _ERROR},
        },
    }},
}

_PURGE = {"name": "purge", "in": "query", "required": False,
          "description": "1 or true: for a finished job, delete its images (and their "
                         "prompt-URL cache entry) instead of answering 409.",
          "schema": {"type": "string"}}


def with_audit(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the audit route and the purge parameter of DELETE /api/v1/jobs/{id}."""
    document = copy.deepcopy(document)
    paths = document["paths"]
    delete = paths.get("/api/v1/jobs/{job_id}", {}).get("delete")
    if delete is not None:
        delete["parameters"] = [*delete.get("parameters", []), _PURGE]
        # The answer is the job, with `deleted: true` (the Job schema allows more fields).
        delete["summary"] += " With ?purge=1, a finished job's images are deleted."
    document["paths"] = {**paths, **AUDIT_PATHS}
    return document
