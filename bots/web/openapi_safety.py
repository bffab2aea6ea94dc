"""The OpenAPI description of image safety (#15): each image's `nsfw` verdict in the Job
schema (bots/web/image_view.py), and the 451 a prompt URL answers for a blocked image.
Applied to the document by bots/web/openapi_page.py."""

from __future__ import annotations

import copy
from typing import Any

NSFW: dict[str, Any] = {
    "type": "object", "required": ["score", "flagged", "action"],
    "description": "Image safety's verdict (IMAGINE_NSFW_MODEL, IMAGINE_NSFW_POLICY).",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1,
                  "description": "The classifier's NSFW probability (1 when the model's own "
                                 "safety checker flagged it; 0 when not classified)."},
        "flagged": {"type": "boolean"},
        "action": {"type": "string", "enum": ["allow", "spoiler", "block"],
                   "description": "allow: `url` is the image; spoiler: `url` is a blurred "
                                  "copy and `original_url` the image; block: withheld, no "
                                  "`name` nor `url`."}}}

IMAGE_PROPERTIES: dict[str, Any] = {
    "name": {"type": ["string", "null"], "description": "null when withheld."},
    "url": {"type": ["string", "null"],
            "description": "The image, its blurred copy when spoilered, null when withheld."},
    "original_url": {"type": "string", "description": "Spoilered images only: the original."},
    "withheld": {"type": "string", "description": "Blocked images only: why."},
    "nsfw": NSFW,
}

WITHHELD_RESPONSE: dict[str, Any] = {
    "description": "Image safety withheld this image (IMAGINE_NSFW_POLICY `web=block`): an "
                   "error card (PNG) or JSON. A spoilered image is served blurred; add "
                   "`reveal=1` for the original.",
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

REVEAL_PARAMETER: dict[str, Any] = {
    "name": "reveal", "in": "query", "required": False,
    "schema": {"type": "string", "enum": ["1", "0", "true", "false", "yes", "no"]},
    "description": "1: a spoilered image's original instead of its blurred copy."}


def with_image_safety(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the verdicts in the Job schema and the prompt URL's 451."""
    document = copy.deepcopy(document)
    job = document["components"]["schemas"]["Job"]
    image = job["properties"]["images"]["items"]
    image["properties"] = {**image["properties"], **IMAGE_PROPERTIES}
    image["required"] = [*image["required"], "nsfw"]
    root = document["paths"]["/"]["get"]
    root["responses"]["451"] = WITHHELD_RESPONSE
    root["parameters"] = [*root.get("parameters", []), REVEAL_PARAMETER]
    return document
