"""The OpenAPI description of the builder page's parts (bots/web/page.py, page_sign.py): `/`
answering HTML to a browser without a prompt, and `POST /api/v1/sign`. Wraps the document of
bots/web/openapi.py, which is full."""

from __future__ import annotations

from typing import Any

from bots.limits import Limits
from bots.web.openapi import openapi_document as _base_document
from bots.web.openapi_audit import with_audit
from bots.web.openapi_language import with_language
from bots.web.openapi_safety import with_image_safety

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

PAGE_HTML = ("Without `prompt`, a client whose Accept names text/html (a browser) gets the "
             "prompt-URL builder page (HTML); other clients get the 400.")

SIGN_PATHS: dict[str, Any] = {
    "/api/v1/sign": {"post": {
        "operationId": "signPrompt",
        "summary": "The prompt URL of a prompt text (flags inline, `--seed random` allowed), "
                   "signed when the server has IMAGINE_URL_SECRET; the secret never leaves it.",
        "security": [{}, {"bearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["prompt"],
            "properties": {"prompt": {"type": "string",
                                      "examples": ["a red fox --ar 16:9 --seed 7"]}}}}}},
        "responses": {
            "200": {"description": "The URL, and whether it carries a signature.",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["url", "signed"],
                        "properties": {"url": {"type": "string", "format": "uri"},
                                       "signed": {"type": "boolean"}}}}}},
            "400": {"description": "Invalid body or prompt.", "content": _ERROR},
            "401": {"description": "IMAGINE_API_TOKEN is set and the bearer token is missing "
                                   "or wrong.", "content": _ERROR},
            "403": {"description": "Signing is off: IMAGINE_URL_SECRET is set but "
                                   "IMAGINE_API_TOKEN is not, so no caller can be trusted "
                                   "to sign.", "content": _ERROR},
        },
    }},
}


def openapi_document(limits: Limits) -> dict[str, Any]:
    """bots.web.openapi's document with the page's HTML answer and the signing route."""
    document = with_language(with_audit(with_image_safety(_base_document(limits))))
    root = document["paths"]["/"]["get"]
    root["description"] = PAGE_HTML
    responses = root["responses"]
    responses["200"] = {**responses["200"], "content": {
        **responses["200"]["content"], "text/html": {"schema": {"type": "string"}}}}
    responses["400"] = {**responses["400"], "description": "Invalid prompt or parameter, or "
                        "no prompt from a client that does not accept HTML."}
    document["paths"] = {**document["paths"], **SIGN_PATHS}
    return document
