"""The OpenAPI description of prompt translation and enhancement (#16): the `raw` and
`enhance` fields of a new job, what the Job schema says about the prompt the user wrote, and
the `enhance` action. Applied to the document by bots/web/openapi_page.py."""

from __future__ import annotations

import copy
from typing import Any

NEW_JOB_PROPERTIES: dict[str, Any] = {
    "raw": {"type": ["boolean", "null"],
            "description": "true: draw the prompt as written, not translated into English "
                           "(IMAGINE_TRANSLATE_MODEL); `--raw` in `prompt` works too."},
    "enhance": {"type": ["boolean", "null"],
                "description": "true: a language model expands the prompt into a detailed "
                               "one first (needs IMAGINE_ENHANCE_MODEL, else 400); "
                               "`--enhance` in `prompt` works too."},
}

JOB_PROPERTIES: dict[str, Any] = {
    "prompt_original": {"type": ["string", "null"],
                        "description": "What the user wrote when the prompt drawn differs "
                                       "(translated or enhanced); null otherwise."},
    "prompt_language": {"type": ["string", "null"],
                        "description": "The detected language of a translated prompt (e.g. "
                                       "zh); null when not translated."},
    "enhanced": {"type": "boolean",
                 "description": "true when a language model expanded the prompt."},
}

ENHANCE_ACTION = (" enhance: the same prompt expanded by the enhancement language model, a new "
                  "seed (400 when the server has no IMAGINE_ENHANCE_MODEL).")


def with_language(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the language fields of NewJob and Job and the enhance action."""
    document = copy.deepcopy(document)
    schemas = document["components"]["schemas"]
    new_job = schemas["NewJob"]
    new_job["properties"] = {**new_job["properties"], **NEW_JOB_PROPERTIES}
    job = schemas["Job"]
    job["properties"] = {**job["properties"], **JOB_PROPERTIES}
    post = document["paths"]["/api/v1/jobs/{job_id}/actions"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    action = body["properties"]["action"]
    action["description"] = action["description"] + ENHANCE_ACTION
    post["summary"] = post["summary"].replace("zoom out or pan.", "zoom out, pan or enhance.")
    return document
