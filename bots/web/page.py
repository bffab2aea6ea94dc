"""The prompt-URL builder page at `/` (no `prompt`, a client that accepts HTML) and `/gallery`.

The page is plain HTML, CSS and JS served from this package: it draws through the REST API
(`POST /api/v1/jobs`, polling the job for previews and the result), then asks
`POST /api/v1/sign` for the prompt URL of what it drew, with the seed the job used, so the
copied URL gives the same image. The page learns only whether a token is needed and whether
signing works, never a secret. JSON clients asking `/` without a prompt keep the 400.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request

from bots.web import tokens
from bots.web.page_gallery import Gallery, GalleryItem
from bots.web.page_headers import page_response
from bots.web.state import WebState, web_state
from settings.i18n import _

bp = Blueprint("page", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")

ASPECT_RATIOS = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16")


def wants_page() -> bool:
    """A browser asking `/` with no prompt: its Accept names text/html (a bare `*/*`, as
    curl and image loaders send, is not enough) and does not prefer JSON."""
    if "prompt" in request.args:
        return False
    named = dict(request.accept_mimetypes)
    html = named.get("text/html", 0)
    return html > 0 and html >= named.get("application/json", 0)


@bp.before_app_request
def page_at_root() -> Response | None:
    """`/` without a prompt, for a person: the page (prompt URLs live in bots.web.images)."""
    if request.path == "/" and request.method in ("GET", "HEAD") and wants_page():
        return builder_page()
    return None


def builder_page() -> Response:
    state = web_state()
    settings = state.settings
    if settings.url_secret is None:
        signing = "none"  # prompt URLs need no signature
    else:
        signing = "on" if tokens.required(settings) else "off"
    html = render_template(
        "page.html", ratios=ASPECT_RATIOS, max_steps=state.limits.max_steps,
        default_steps=state.limits.default_steps, token=tokens.required(settings),
        signing=signing, gallery=settings.gallery)
    return _page(html)


@bp.get("/gallery")
def gallery() -> Response:
    state = web_state()
    if not state.settings.gallery:
        abort(404, _("The gallery is off on this server (IMAGINE_GALLERY=false)."))
    items = [(item, state.image_url(item.image)) for item in Gallery(state.redis).recent()]
    return _page(render_template("gallery.html", items=items))


def _page(html: str) -> Response:
    response = page_response(html, 200, web_state().settings, blob_images=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def record_made(state: WebState, prompt: str, image: str) -> None:
    """A prompt URL's image was just made: into the gallery, when the gallery is on."""
    if state.settings.gallery:
        url = state.settings.public_url.rstrip("/") + request.full_path
        Gallery(state.redis).record(GalleryItem(image=image, url=url, prompt=prompt))
