"""The answer every HTML page of ours gets: a strict Content-Security-Policy, no referrer,
never cached. Scripts and styles come from this server only; images also from where the
images live (IMAGINE_PUBLIC_URL, or the bucket a redirect sends them to)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response

from settings import Settings


def _origin(url: str) -> str:
    return "{0.scheme}://{0.netloc}".format(urlsplit(url))


def image_origins(settings: Settings) -> list[str]:
    origins = {_origin(settings.public_url)}
    if settings.s3_redirect:  # images answer with a redirect to the bucket
        origins.add(_origin(settings.s3_endpoint) if settings.s3_endpoint else "https:")
    return sorted(origins)


def page_response(html: str, status: int, settings: Settings, *,
                  blob_images: bool = False) -> Response:
    """`html` as a self-contained page; `blob_images`: it also shows images it fetched
    itself (previews fetched with the API token)."""
    sources = ["'self'", *(["blob:"] if blob_images else []), *image_origins(settings)]
    response = Response(html, status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src "
        f"{' '.join(sources)}; connect-src 'self'; form-action 'none'; base-uri 'none'; "
        "frame-ancestors 'none'")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
