"""The OpenAPI description of GET /api/v1/models (bots/web/models_api.py), merged into the
document by bots/web/openapi.py."""

from __future__ import annotations

from typing import Any

from settings.catalogue import FAMILIES

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_NAMED = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string"},
    "triggers": {"type": "array", "items": {"type": "string"},
                 "description": "Words that call it up (a LoRA's `<name>.txt` beside it)."}}}
_FAMILY = {"type": ["string", "null"], "enum": [*FAMILIES, None],
           "description": "Base-model family (which LoRAs and ControlNets fit); null: "
                          "detected when the model loads."}
_MODEL = {
    "type": "object",
    "required": ["name", "family", "defaults", "description", "triggers"],
    "properties": {
        "name": {"type": "string", "description": "As `model` takes it; `default` is the "
                                                  "server's IMAGINE_MODEL."},
        "family": _FAMILY,
        "defaults": {"type": "object", "description": "What the model draws with when the "
                     "job leaves it out (only those its entry sets; the rest are the "
                     "server's defaults).",
                     "properties": {"steps": {"type": "integer"}, "cfg": {"type": "number"},
                                    "sampler": {"type": "string"},
                                    "size": {"type": "integer",
                                             "description": "Side of the default square."},
                                    "negative": {"type": "string"}}},
        "description": {"type": "string"},
        "triggers": {"type": "array", "items": {"type": "string"}},
    },
}
_CONTROLNET = {"type": "object", "required": ["name", "families", "input"], "properties": {
    "name": {"type": "string", "description": "The kind, as --cn takes it."},
    "families": {"type": "array", "items": {"type": "string"},
                 "description": "Families it has models for; empty: one model for all."},
    "input": {"type": "string", "enum": ["photo", "map"],
              "description": "photo: a map is computed from the control image; map: the "
                             "control image is taken as the ready map."}}}
_LISTING = {
    "type": "object",
    "required": ["models", "loras", "embeddings", "controlnets"],
    "properties": {"models": {"type": "array", "items": _MODEL},
                   "loras": {"type": "array", "items": _NAMED},
                   "embeddings": {"type": "array", "items": _NAMED},
                   "controlnets": {"type": "array", "items": _CONTROLNET}},
}

MODELS_PATHS: dict[str, Any] = {
    "/api/v1/models": {"get": {
        "operationId": "listModels",
        "summary": "The models (with their descriptions and defaults), LoRAs, embeddings "
                   "and ControlNet kinds a job may name here.",
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": {"description": "The listing.",
                    "content": {"application/json": {"schema": _LISTING}}},
            "401": {"description": "IMAGINE_API_TOKEN is set and the bearer token is missing "
                                   "or wrong.", "content": _ERROR},
            "413": {"description": "The body is larger than this route takes.",
                    "content": _ERROR},
            "414": {"description": "The query string is too long.", "content": _ERROR},
        },
    }},
}
