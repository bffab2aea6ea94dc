"""Prompt URL query strings → a normalised request, its cache key and its signing text.

`/?prompt=a+fox&ar=16:9` and `/?ar=16:9&prompt=a+fox+` are the same image: both become the
same `ImageRequest` through the grammar, with a seed derived from the parameters when none
is given. The cache key adds the model's identity (its source, not its nickname), so
pointing IMAGINE_MODEL at another model never serves the old model's pictures.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from bots.errors import PromptError
from bots.grammar import request_from_fields
from bots.limits import Limits
from generator.request import ImageRequest
from settings.i18n import _

# Query parameters that steer the answer rather than the image.
CONTROL_FIELDS: tuple[str, ...] = ("sig", "wait", "reveal")
# `reveal=1`: a spoilered image's original instead of its blurred copy (an explicit request).
REVEAL_VALUES = ("1", "true", "yes")
RANDOM_SEED = "random"


@dataclass(frozen=True)
class PromptQuery:
    """One prompt URL, read: the request (seeded unless `random`), the signature, the wait."""

    request: ImageRequest
    random: bool
    sig: str | None
    wait: float | None
    reveal: bool = False

    def signing_text(self) -> bytes:
        """What a signature covers: the normalised parameters, not their spelling."""
        return signing_text(self.request, self.random)


def signing_text(request: ImageRequest, random: bool) -> bytes:
    fields = request.canonical_dict(exclude=frozenset({"seed"}) if random else frozenset())
    return json.dumps({"request": fields, "random": random}, sort_keys=True,
                      separators=(",", ":")).encode()


def cache_key(request: ImageRequest, model_source: str) -> str:
    """The permanent identity of a seeded request's image on this model."""
    text = json.dumps({"request": request.canonical_dict(), "model": model_source},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def memo_key(args: Mapping[str, list[str]]) -> str | None:
    """The parameters in a normal form that is cheap to compute: names lower-cased, sorted,
    whitespace runs in values collapsed (as the grammar does), `wait` left out.

    Every spelling of a prompt URL that only differs in spacing, order or case of names has
    the same key, so a memo by this key skips parsing on a hit and never grows with padded
    spellings. The signature is part of the key: only checked signatures are remembered.
    None for what must not be memoised (`seed=random`, repeated parameters).
    """
    parts = []
    for name, values in args.items():
        key = name.lower()
        if key in ("wait",):
            continue
        if len(values) != 1:
            return None
        value = " ".join(values[0].split())
        if key == "seed" and value.lower() == RANDOM_SEED:
            return None
        parts.append(f"{key}={value}")
    return "\n".join(sorted(parts))


def _single(args: Mapping[str, list[str]], name: str) -> str | None:
    values = args.get(name) or []
    if len(values) > 1:
        raise PromptError(_("The query parameter {name} is given {count} times; give "
                            "it once.").format(name=name, count=len(values)))
    return values[0] if values else None


def _wait(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise PromptError(_("wait must be a number of seconds, 0 or more, not {text!r}.").format(
                              text=text[:40]))
    return value


def read_query(args: Mapping[str, list[str]], limits: Limits) -> PromptQuery:
    """Read `?prompt=…&seed=…&sig=…&wait=…`; PromptError with the grammar's message if invalid.

    `args` maps each parameter to all its values (Werkzeug's `request.args.to_dict(flat=False)`).
    """
    fields: dict[str, str | None] = {}
    for name in args:
        key = name.lower()
        if key in CONTROL_FIELDS:
            continue
        if key in ("n", "count"):
            raise PromptError(_("A prompt URL draws one image: leave out n (the REST API at "
                                "/api/v1/jobs draws several)."))
        if key in fields:
            raise PromptError(_("The query parameter {key} is given twice; give it once.").format(
                                  key=key))
        fields[key] = _single(args, name)
    if "prompt" not in fields:
        raise PromptError(_("Add ?prompt=… to the URL: describe the image, e.g. "
                            "/?prompt=a+red+fox+in+snow&ar=16:9"))
    seed = fields.get("seed")
    random = seed is not None and seed.strip().lower() == RANDOM_SEED
    if random:
        fields.pop("seed")
    request = request_from_fields(fields, limits)
    if request.num_images != 1:
        raise PromptError(_("A prompt URL draws one image: leave out --n (the REST API at "
                            "/api/v1/jobs draws several)."))
    return PromptQuery(
        request=request if random else request.seeded(),
        random=random,
        sig=_single(args, "sig"),
        wait=_wait(_single(args, "wait")),
        reveal=(_single(args, "reveal") or "").strip().lower() in REVEAL_VALUES,
    )
