"""The OpenAPI description of live previews (bots/web/previews_api.py): the preview route
and the job's `preview_url`, merged into the document by bots/web/openapi.py."""

from __future__ import annotations

from typing import Any

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

PREVIEW_URL: dict[str, Any] = {
    "type": ["string", "null"],
    "description": "The latest live preview of a running job (a small JPEG, …/preview.jpg"
                   "?v=N; N grows with each new preview, so fetch again when it changes); "
                   "null before the first preview, once the job finished, or when the "
                   "server makes none (IMAGINE_PREVIEW_INTERVAL=0).",
}

PREVIEW_PATHS: dict[str, Any] = {
    "/api/v1/jobs/{job_id}/preview.jpg": {"get": {
        "operationId": "getJobPreview",
        "summary": "The latest live preview of a running job (at most 256 px a side).",
        "parameters": [
            {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "v", "in": "query", "required": False, "schema": {"type": "integer"},
             "description": "The preview count from `preview_url`; only busts caches."}],
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": {"description": "The preview, marked `Cache-Control: no-store`.",
                    "headers": {"X-Imagine-Preview": {
                        "description": "How many previews the job has had.",
                        "schema": {"type": "integer"}}},
                    "content": {"image/jpeg": {"schema": {"type": "string",
                                                          "format": "binary"}}}},
            "401": {"description": "IMAGINE_API_TOKEN is set and the bearer token is missing "
                                   "or wrong.", "content": _ERROR},
            "404": {"description": "No such job, or it has no preview now (not started, "
                                   "finished, or previews are off).", "content": _ERROR},
        },
    }},
}


def with_preview_url(job_schema: dict[str, Any]) -> dict[str, Any]:
    """The Job schema with `preview_url` among its (always present) properties."""
    return {**job_schema, "required": [*job_schema["required"], "preview_url"],
            "properties": {**job_schema["properties"], "preview_url": PREVIEW_URL}}
