"""The web's language: each request's `Accept-Language` picks the catalog for the prompt-URL
image cards and the JSON error messages (settings.i18n.negotiate), and the jobs it submits
record it so the workers' messages match. Reset after the request: server threads are reused.
"""

from __future__ import annotations

from flask import Flask, request

from bots.web.card_fonts import card_locale
from settings.i18n import SOURCE_LOCALE, current_locale, negotiate, set_locale
from tasks.core.jobs import EXTRA_LOCALE


def install(app: Flask) -> None:
    """Speak each request's language, and English again once it is answered."""
    def speak() -> None:  # returns None: a before_request that returns a value answers it
        locale = negotiate(request.headers.get("Accept-Language"))
        set_locale(card_locale(locale) if _draws_cards() else locale)

    def english_again(_exc: BaseException | None) -> None:
        set_locale(None)

    app.before_request(speak)
    app.teardown_request(english_again)


def _draws_cards() -> bool:
    """True for a prompt URL answered with image cards (not JSON): their text must be in a
    language the server has a font for."""
    best = request.accept_mimetypes.best_match(["image/png", "application/json"])
    return request.path == "/" and "prompt" in request.args and best != "application/json"


def locale_extra() -> dict[str, str]:
    """A web job's requester extra for its language ({} for English)."""
    locale = current_locale()
    return {} if locale == SOURCE_LOCALE else {EXTRA_LOCALE: locale}
