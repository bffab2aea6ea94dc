"""The bot's messages in the user's language: gettext catalogs read with Babel.

Every user-facing string is written in English inside `_()` (or `ngettext`, or `N_()` where
it is only marked and translated later), with `{name}` placeholders filled by `.format()`
after translation, so a translator can move them. The language is a context variable:
a front end sets it from what the platform says about the user (`use_locale`) around the
handling of one request, a worker around one job (the locale travels in the job's
requester), and everything called inside — errors raised deep in the grammar included —
speaks that language.

Catalogs live in `settings/locales/<locale>/LC_MESSAGES/*.po` (every .po file of a folder
is one catalog, merged). A translator adds a language by adding a folder; no code changes.
A message with no translation falls back to English.
"""

from __future__ import annotations

import gettext
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache, lru_cache
from pathlib import Path

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "imagine"
SOURCE_LOCALE = "en"  # the language the msgids are written in

_current: ContextVar[str] = ContextVar("imagine_locale", default=SOURCE_LOCALE)


def _(message: str) -> str:
    """`message` in the current language (English when it has no translation)."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The form of `singular`/`plural` for `count`, in the current language."""
    return translations(_current.get()).ngettext(singular, plural, count)


def N_(message: str) -> str:  # noqa: N802 - gettext's own name for "mark, translate later"
    """Mark `message` for the catalog without translating it here (a constant at import
    time, translated with `_()` where it is shown)."""
    return message


def current_locale() -> str:
    return _current.get()


@contextmanager
def use_locale(locale: str | None) -> Iterator[str]:
    """Speak `locale` (any form: "zh-CN", "zh_CN", "zh") inside the block; an unknown or
    empty one is English. Yields the locale in use."""
    chosen = best_locale(locale) or SOURCE_LOCALE
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def set_locale(locale: str | None) -> str:
    """Speak `locale` from now on in this context (a Flask request, an asyncio task)."""
    chosen = best_locale(locale) or SOURCE_LOCALE
    _current.set(chosen)
    return chosen


@lru_cache(maxsize=1)
def available_locales() -> tuple[str, ...]:
    """The locales with a catalog, the source language first."""
    found = sorted(path.parent.parent.name for path in LOCALES_DIR.glob("*/LC_MESSAGES/*.po"))
    return tuple(dict.fromkeys([SOURCE_LOCALE, *found]))


def best_locale(tag: str | None) -> str | None:
    """The available locale for a language tag ("zh-CN", "zh_CN", "zh", "en-US"): the exact
    one, else one of the same language where either side names no territory ("zh" → "zh_CN",
    "en-GB" → "en"); None when none fits ("zh-TW" is not given Simplified Chinese)."""
    if not tag:
        return None
    parts = re.split(r"[-_]", tag.strip())
    language = parts[0].lower()
    territory = parts[1].upper() if len(parts) > 1 and parts[1] else ""
    wanted = f"{language}_{territory}" if territory else language
    available = available_locales()
    if wanted in available:
        return wanted
    for locale in available:
        have_language, _, have_territory = locale.partition("_")
        if have_language == language and not (territory and have_territory):
            return locale
    return None


def negotiate(accept_language: str | None) -> str | None:
    """The best available locale for an HTTP Accept-Language header, by its q-values."""
    if not accept_language:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        if match:
            try:
                quality = float(match.group(1))
            except ValueError:
                continue
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        locale = best_locale(tag)
        if locale:
            return locale
    return None


@cache
def translations(locale: str) -> gettext.NullTranslations:
    """The merged catalog of `locale` (every .po of its folder), compiled in memory."""
    from babel.messages.mofile import write_mo  # noqa: PLC0415 - only when a catalog exists
    from babel.messages.pofile import read_po  # noqa: PLC0415

    files = sorted((LOCALES_DIR / locale / "LC_MESSAGES").glob("*.po"))
    if not files or locale == SOURCE_LOCALE:
        return gettext.NullTranslations()
    merged = None
    for path in files:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=locale, domain=DOMAIN)
        if merged is None:
            merged = catalog
            continue
        for message in catalog:
            if message.id and message.string:
                merged[message.id] = message
    if merged is None:
        return gettext.NullTranslations()
    buffer = io.BytesIO()
    write_mo(buffer, merged)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)
