"""Signed prompt URLs: with IMAGINE_URL_SECRET set, only URLs we handed out start work.

The signature is an HMAC-SHA256 of the normalised parameters (`bots.web.query.signing_text`), so
any spelling of the same request carries the same `sig`, and changing one parameter
invalidates it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlencode

from bots.grammar import parse
from bots.limits import Limits
from bots.web.query import RANDOM_SEED, signing_text
from generator.request import ImageRequest
from settings import Settings

# `--seed random` is a prompt URL's own value, not part of the chat grammar.
_RANDOM_SEED = re.compile(rf"(?:--|[\u2013\u2014])seed(?:=|\s+){RANDOM_SEED}(?=\s|$)", re.I)
SIG_CHARS = 32  # 128 bits of the HMAC: plenty against guessing, short enough for a URL
_HEX = re.compile(r"[0-9a-fA-F]+")


def signature(secret: str, text: bytes) -> str:
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()[:SIG_CHARS]


def verify(secret: str, text: bytes, sig: str | None) -> bool:
    """Whether `sig` signs `text`; False (never an error) for anything but ASCII hex."""
    if not sig or not _HEX.fullmatch(sig):
        return False
    return hmac.compare_digest(signature(secret, text).encode(), sig.lower().encode())


def signed_url(settings: Settings, text: str) -> str:
    """`imagine sign-url "a fox --ar 16:9"`: the URL for that prompt text (`--seed random` ok).

    The URL keeps the text as written; the signature covers what it means.
    """
    text, count = _RANDOM_SEED.subn(" ", text)
    text = " ".join(text.split())
    random = count > 0
    request = parse(text, Limits.from_settings(settings))
    params = {"prompt": text, **({"seed": RANDOM_SEED} if random else {})}
    return _url(settings, params, request, random)


def _url(settings: Settings, params: dict[str, str], request: ImageRequest,
         random: bool) -> str:
    if settings.url_secret is not None:
        seeded = request if random else request.seeded()
        params = {**params, "sig": signature(settings.url_secret.get_secret_value(),
                                             signing_text(seeded, random))}
    return f"{settings.public_url.rstrip('/')}/?{urlencode(params)}"
