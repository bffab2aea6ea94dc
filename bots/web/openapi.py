"""The OpenAPI 3.1 document served at /api/v1/openapi.json.

Written by hand next to the views it describes; a test runs schemathesis against a live
server with it, so a response the document does not allow fails the suite.
"""

from __future__ import annotations

from typing import Any

from bots.flags import IW_MAX
from bots.followups import ACTIONS
from bots.limits import CFG_MAX, Limits
from bots.web.openapi_models import MODELS_PATHS
from bots.web.openapi_previews import PREVIEW_PATHS, with_preview_url
from generator.request import (
    CONTROL_WEIGHT_MAX,
    IMAGE_PROMPT_STRENGTH,
    LORA_WEIGHT_MAX,
    LORA_WEIGHT_MIN,
    SAMPLERS,
    SEED_MAX,
)

_RATIO = "^[0-9]+:[0-9]+$"
_IMAGE_REFERENCE = ("A data URL (data:image/png;base64,…) or an http(s) URL (a public "
                    "address; at most IMAGINE_MAX_UPLOAD_BYTES; PNG, JPEG, WebP, GIF or BMP).")
_SIZE = "^[0-9]+([xX][0-9]+)?$"

_ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {"error": {"type": "string", "description": "What was wrong and what to do."},
                   "status": {"type": "integer"}},
}
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_PNG = {"image/png": {"schema": {"type": "string", "format": "binary"}}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before asking again.",
                                "schema": {"type": "string"}}}


def _error(description: str, *, retry: bool = False, png: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = dict(_JSON_ERROR)
    if png:
        content.update(_PNG)
    response: dict[str, Any] = {"description": description, "content": content}
    if retry:
        response["headers"] = dict(_RETRY_AFTER)
    return response


_UNAUTHORISED = _error("IMAGINE_API_TOKEN is set and the bearer token is missing or wrong.")
# Every route: a body over the route's limit (413, before it is read), a query string over
# the cap from IMAGINE_MAX_PROMPT_LENGTH (414).
_SIZES = {"413": _error("The body is larger than this route takes."),
          "414": _error("The query string is too long.")}
_PLAIN_SIZES = {"413": {"description": "The body is larger than this route takes."},
                "414": {"description": "The query string is too long."}}
_USER_LIMIT = ("Too many new jobs from this client (an IPv4 address or an IPv6 /64) this "
               "minute, or IMAGINE_MAX_JOBS_PER_USER unfinished jobs already.")

_JOB = {
    "type": "object",
    "required": ["id", "status", "progress", "step", "total_steps", "position", "eta_seconds",
                 "prompt", "platform", "images", "notes", "error", "created_at", "started_at",
                 "finished_at", "links"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string",
                   "enum": ["queued", "running", "done", "failed", "cancelled"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "step": {"type": "integer"},
        "total_steps": {"type": "integer"},
        "phase": {"type": ["string", "null"], "description": "\"loading model NAME…\" before step 1"},
        "position": {"type": ["integer", "null"],
                     "description": "1 for the next job to start; null unless queued."},
        "eta_seconds": {"type": ["number", "null"]},
        "prompt": {"type": "string", "description": "The request as prompt text with flags."},
        "platform": {"type": "string"},
        "images": {"type": "array", "items": {
            "type": "object", "required": ["name", "url", "width", "height", "seed"],
            "properties": {"name": {"type": "string"}, "url": {"type": "string"},
                           "width": {"type": "integer"}, "height": {"type": "integer"},
                           "seed": {"type": ["integer", "null"]}}}},
        "notes": {"type": "array", "items": {"type": "string"},
                  "description": "What to know about the result: scaled down to fit, the "
                                 "first frame of an animated image used, …"},
        "error": {"type": ["string", "null"]},
        "created_at": {"type": "number"},
        "started_at": {"type": ["number", "null"]},
        "finished_at": {"type": ["number", "null"]},
        "links": {"type": "object", "required": ["self"],
                  "properties": {"self": {"type": "string"}}},
        "cancel_requested": {"type": "boolean"},
    },
}

def _new_job(limits: Limits) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": limits.max_prompt_length,
                       "description": "Prompt text; the chat flags (--ar, --seed, …) work "
                                      "inline."},
            "seed": {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
            "ar": {"type": "string", "pattern": _RATIO,
                   "description": "W:H from 1:4 to 4:1, e.g. 16:9."},
            "size": {"type": "string", "pattern": _SIZE,
                     "description": "WxH or N for a square, e.g. 768x512."},
            "steps": {"type": "integer", "minimum": 1, "maximum": limits.max_steps},
            "cfg": {"type": "number", "minimum": 0, "maximum": CFG_MAX},
            "no": {"type": "string", "description": "What to leave out."},
            "n": {"type": "integer", "minimum": 1, "maximum": limits.max_images},
            "model": {"type": "string", "enum": list(limits.models)},
            "sampler": {"type": "string", "enum": list(SAMPLERS)},
            "image": {"type": "string", "description": _IMAGE_REFERENCE + " The prompt is "
                      "drawn from it (img2img; an image URL first in `prompt` works too). It "
                      "keeps its shape, scaled down to the job's size (default, `size` or "
                      "`ar`); animated: the first frame; transparent parts: white."},
            "mask": {"type": "string", "description": _IMAGE_REFERENCE + " Needs `image`: "
                     "its white parts (luminance ≥ 128) are redrawn, the rest kept (inpaint, "
                     "at the image's own size, one image). The image's size, as sent."},
            "strength": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                         "description": "With `image`: how far from the image (default "
                                        f"{IMAGE_PROMPT_STRENGTH:g})."},
            "iw": {"type": "number", "minimum": 0, "maximum": IW_MAX,
                   "description": "With `image`, instead of strength: image weight, more is "
                                  "closer to the image (strength = "
                                  f"{IMAGE_PROMPT_STRENGTH:g}^iw)."},
            "lora": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                     "description": f"LoRAs of IMAGINE_LORA_DIR: `name` or `name:weight` ("
                     f"{LORA_WEIGHT_MIN:g} to {LORA_WEIGHT_MAX:g}, default 1), comma-separated "
                     "or a list; `<lora:name:weight>` in `prompt` works too."},
            "cn": {"type": "string", "description": "ControlNet: `kind` or `kind:weight` (a "
                   f"kind of {', '.join(limits.control_kinds) or 'none on this server'}; "
                   f"weight 0 to {CONTROL_WEIGHT_MAX:g}, default 1). Needs `control_image`."},
            "control_image": {"type": "string", "description": _IMAGE_REFERENCE + " What "
                              "`cn` follows; sets the shape (or cropped to `image`'s)."},
            "webhook": {"type": "string", "pattern": "^https?://",
                        "description": "http(s) URL to POST the result to when done: "
                                       "a public address (the operator may allow others), "
                                       "no user:password, redirects not followed; signed "
                                       "with X-Imagine-Signature when the server has a "
                                       "webhook secret."},
        },
    }


def _prompt_parameters(limits: Limits) -> list[dict[str, Any]]:
    def query(name: str, schema: dict[str, Any], description: str = "",
              required: bool = False) -> dict[str, Any]:
        parameter = {"name": name, "in": "query", "required": required, "schema": schema}
        if description:
            parameter["description"] = description
        return parameter

    return [
        query("prompt", {"type": "string", "minLength": 1,
                         "maxLength": limits.max_prompt_length},
              "The prompt; flags such as --ar 16:9 may be inline.", required=True),
        query("seed", {"type": "string", "pattern": "^([0-9]{1,10}|random)$"},
              f"0 to {SEED_MAX}, or `random` for a new image each time (never cached)."),
        query("ar", {"type": "string", "pattern": _RATIO}),
        query("size", {"type": "string", "pattern": _SIZE}),
        query("steps", {"type": "integer", "minimum": 1, "maximum": limits.max_steps}),
        query("cfg", {"type": "number", "minimum": 0, "maximum": CFG_MAX}),
        query("no", {"type": "string"}, "What to leave out."),
        query("model", {"type": "string", "enum": list(limits.models)}),
        query("sampler", {"type": "string", "enum": list(SAMPLERS)}),
        query("sig", {"type": "string"},
              "Required when the server has IMAGINE_URL_SECRET: see `imagine sign-url`."),
        query("wait", {"type": "number", "minimum": 0},
              "Seconds to wait for a new image (capped by IMAGINE_MAX_WAIT)."),
    ]


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_JOB_RESPONSE = {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}


def openapi_document(limits: Limits) -> dict[str, Any]:
    """The document for this server's limits (step cap, model names)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "imagine", "version": "1",
                 "description": "Prompt URLs for Markdown and a job API for scripts."},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": {"Error": _ERROR, "Job": with_preview_url(_JOB), "NewJob": _new_job(limits)},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {**_prompt_paths(limits), **_IMAGE_PATHS, **_JOB_PATHS, **_ACTION_PATHS,
                  **_RECALL_PATHS, **MODELS_PATHS, **_OPS_PATHS, **PREVIEW_PATHS},
    }


def _prompt_paths(limits: Limits) -> dict[str, Any]:
    """GET /?prompt=…: its parameters carry this server's limits."""
    return {
        "/": {"get": {
            "operationId": "promptImage",
            "summary": "The image of a prompt; the same URL always gives the same image.",
            "parameters": _prompt_parameters(limits),
            "responses": {
                "200": {"description": "The image (cached for a year), or a `rendering…` "
                                       "placeholder marked no-store with Retry-After.",
                        "content": dict(_PNG)},
                "202": {"description": "Not ready yet (clients that prefer JSON).",
                        "headers": dict(_RETRY_AFTER),
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "304": {"description": "Not modified (If-None-Match)."},
                "400": _error("Invalid prompt or parameter.", png=True),
                "403": _error("Missing or wrong `sig`.", png=True),
                "413": _error("The body is larger than this route takes.", png=True),
                "414": _error("The query string is too long.", png=True),
                "429": _error(_USER_LIMIT, retry=True, png=True),
                "503": _error("The queue is full or the drawing failed.", retry=True,
                              png=True),
            },
        }},
    }


_IMAGE_PATHS: dict[str, Any] = {
    "/images/{name}.png": {"get": {
        "operationId": "storedImage",
        "summary": "A stored image by its content hash.",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The image.", "content": dict(_PNG)},
                      "304": {"description": "Not modified."},
                      "404": {"description": "No such image."}, **_PLAIN_SIZES},
    }},
}

_JOB_PATHS: dict[str, Any] = {
    "/api/v1/jobs": {"post": {
        "operationId": "createJob",
        "summary": "Submit a job.",
        "security": [{}, {"bearer": []}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/NewJob"}}}},
        "responses": {
            "202": {"description": "Queued.", "content": _JOB_RESPONSE,
                    "headers": {"Location": {"schema": {"type": "string"}}}},
            "400": _error("Invalid body, prompt or field, or an image or mask that cannot be "
                          "used (not an image, too large, a URL not allowed, a mask of "
                          "another size)."),
            "401": _UNAUTHORISED,
            **_SIZES,
            "429": _error(_USER_LIMIT, retry=True),
            "503": _error("The queue is full.", retry=True),
        },
    }},
    "/api/v1/jobs/{job_id}": {
        "get": {
            "operationId": "getJob",
            "summary": "A job's status, progress and images.",
            "security": [{}, {"bearer": []}],
            "parameters": [_JOB_ID],
            "responses": {"200": {"description": "The job.", "content": _JOB_RESPONSE},
                          "401": _UNAUTHORISED,
                          "404": _error("No such job (or its record expired)."), **_SIZES},
        },
        "delete": {
            "operationId": "cancelJob",
            "summary": "Cancel a job; only whoever created it may (the API token's holder "
                       "when IMAGINE_API_TOKEN is set, else the same address).",
            "security": [{}, {"bearer": []}],
            "parameters": [_JOB_ID],
            "responses": {"200": {"description": "Cancelled, or cancel requested.",
                                  "content": _JOB_RESPONSE},
                          "401": _UNAUTHORISED,
                          "404": _error("No such job, or not yours."),
                          "409": _error("The job already finished."), **_SIZES},
        },
    },
}

_ACTION_PATHS: dict[str, Any] = {
    "/api/v1/jobs/{job_id}/actions": {"post": {
        "operationId": "actOnJob",
        "summary": "A chat button's operation on an image of a finished job: reroll, vary, "
                   "upscale, zoom out or pan.",
        "security": [{}, {"bearer": []}],
        "parameters": [_JOB_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["action"],
            "properties": {
                "action": {"type": "string",
                           "enum": list(ACTIONS),
                           "description": "reroll: new seed; vary_subtle/vary_strong: "
                                          "img2img from the image; upscale (Subtle) / "
                                          "upscale_creative: the image at "
                                          "IMAGINE_UPSCALE_FACTOR × its size (capped by "
                                          "IMAGINE_MAX_UPSCALE_PIXELS), same seed; zoom_out: "
                                          "a canvas `factor` × larger, the new area drawn; "
                                          "pan: half the image's side added towards "
                                          "`direction`."},
                "index": {"type": "integer", "minimum": 0, "default": 0,
                          "description": "Which image, 0-based (the U1 button is 0)."},
                "factor": {"type": "number", "enum": [1.5, 2], "default": 2,
                           "description": "zoom_out only."},
                "direction": {"type": "string", "enum": ["left", "right", "up", "down"],
                              "description": "pan only, and required for it."},
            },
        }}}},
        "responses": {
            "202": {"description": "The new job, queued.", "content": _JOB_RESPONSE,
                    "headers": {"Location": {"schema": {"type": "string"}}}},
            "400": _error("Invalid body, action or image index, factor or direction given "
                          "to another action, or pan without direction."),
            "401": _UNAUTHORISED,
            "404": _error("No such job (or its record expired)."),
            "409": _error("The job has not finished, or finished without images."),
            **_SIZES,
            "429": _error(_USER_LIMIT, retry=True),
            "503": _error("The queue is full.", retry=True),
        },
    }},
}

_RECALLED = {
    "type": "object",
    "required": ["prompt", "parameters", "notes"],
    "properties": {
        "prompt": {"type": "string",
                   "description": "Prompt text with flags that draws it again here; an "
                                  "operation's image adds a line naming the operation and "
                                  "its source image's hash."},
        "parameters": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "Everything the PNG recorded (A1111 names: Prompt, "
                                      "Negative prompt, Steps, Sampler, …)."},
        "notes": {"type": "array", "items": {"type": "string"},
                  "description": "What was changed to fit this server's limits."},
    },
}

_RECALL_PATHS: dict[str, Any] = {
    "/api/v1/recall": {"post": {
        "operationId": "recall",
        "summary": "The prompt and parameters recorded in a PNG (ours, A1111's, Forge's, …).",
        "security": [{}, {"bearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["image"],
            "properties": {"image": {
                "type": "string",
                "description": "The PNG as a data URL (data:image/png;base64,…) or an "
                               "http(s) URL (a public address; at most "
                               "IMAGINE_MAX_UPLOAD_BYTES)."}},
        }}}},
        "responses": {
            "200": {"description": "What the PNG records.",
                    "content": {"application/json": {"schema": _RECALLED}}},
            "400": _error("Invalid body, or the image could not be read (not an image, too "
                          "large, a URL that is not allowed)."),
            "401": _UNAUTHORISED,
            **_SIZES,
            "422": _error("The image carries no generation parameters."),
            "429": _error("Too many URL fetches from this client this minute.", retry=True),
            "503": _error("The database behind the rate limit is unreachable.", retry=True),
        },
    }},
}

_PART = {"type": "string", "enum": ["ok", "not ok"]}
_HEALTH = {"type": "object", "required": ["ok", "parts"],
           "properties": {"ok": {"type": "boolean"},
                          "parts": {"type": "object", "properties": {
                              "redis": _PART, "generate_workers": _PART,
                              "deliver_workers": _PART}}}}

_OPS_PATHS: dict[str, Any] = {
    "/healthz": {"get": {
        "operationId": "health",
        "summary": "Redis reachable and a generate worker alive; `parts` says ok or not "
                   "ok for redis, generate_workers and deliver_workers.",
        "responses": {"200": {"description": "Healthy.",
                              "content": {"application/json": {"schema": _HEALTH}}},
                      "503": {"description": "Unhealthy.",
                              "content": {"application/json": {"schema": _HEALTH}}},
                      **_PLAIN_SIZES},
    }},
    "/metrics": {"get": {
        "operationId": "metrics",
        "summary": "Prometheus metrics (Bearer IMAGINE_METRICS_TOKEN when set).",
        "responses": {"200": {"description": "Text exposition format.",
                              "content": {"text/plain": {
                                  "schema": {"type": "string"}}}},
                      "401": {"description": "IMAGINE_METRICS_TOKEN is set and the bearer "
                                             "token is missing or wrong."},
                      **_PLAIN_SIZES},
    }},
}
