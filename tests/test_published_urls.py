"""Prompt URLs handed out before a release keep their signature, their seed and their image.

The figures below were computed by the code of the first release; a change that alters any
of them breaks every prompt URL already embedded in READMEs and wikis.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import Field

from bots.limits import Limits
from bots.web.query import cache_key, read_query
from bots.web.signing import signed_url, verify
from generator.request import ImageRequest, derived_seed
from settings import Settings

SECRET = "s3cret"
MODEL_SOURCE = "stabilityai/sd-turbo"
# (what `imagine sign-url` was given, the URL it printed, the derived seed, the cache key)
PUBLISHED = [
    ("a red fox",
     "https://img.example.com/?prompt=a+red+fox&sig=fd969f8b92731ab4487920c9ee0e4eb0",
     1658447167, "071cb4c9f207328d04a36a61908dc937cd5a4622a2733f2ed586c5ccfbe5238a"),
    ("a red fox --ar 16:9 --seed 7 --steps 20 --cfg 6.5 --no text --sampler heun",
     "https://img.example.com/?prompt=a+red+fox+--ar+16%3A9+--seed+7+--steps+20+--cfg+6.5"
     "+--no+text+--sampler+heun&sig=e05559b509a1cfa9f1b6c0e5418528fe",
     7, "ec9a8ca6a5c73fd3660a3082556e87e05e770b96a0ab0b09bc8854b88fe30e73"),
    ("ein Fuchs im Schnee – 🦊",
     "https://img.example.com/?prompt=ein+Fuchs+im+Schnee+%E2%80%93+%F0%9F%A6%8A"
     "&sig=ee772ad265a1bb0a523cfd9d5171f318",
     3007570366, "a464b2b50c7c747c2abec176b265fc5f1fbde099d566a5c7992b8c5824480a9e"),
    ("a castle --ar 3:2 --no people --seed random",
     "https://img.example.com/?prompt=a+castle+--ar+3%3A2+--no+people&seed=random"
     "&sig=905cfd41081e64f264d8ae6ccf58e9ab",
     None, None),
    ("a lighthouse --size 640x384 --model default --steps 30",
     "https://img.example.com/?prompt=a+lighthouse+--size+640x384+--model+default+--steps+30"
     "&sig=d0907284c8f077b924a6337a61cfc5b0",
     2837524595, "2d9716f56ca659fb632909655bc71aa3e2e4d8cbe339fae681f33372554916d4"),
]


@pytest.fixture
def settings() -> Settings:
    return Settings(url_secret=SECRET, public_url="https://img.example.com", _env_file=None)


@pytest.mark.parametrize(("text", "url", "seed", "key"), PUBLISHED)
def test_a_published_url_keeps_its_signature_seed_and_cache_key(
        settings: Settings, text: str, url: str, seed: int | None, key: str | None) -> None:
    assert signed_url(settings, text) == url
    query = read_query(parse_qs(urlsplit(url).query), Limits.from_settings(settings))
    assert verify(SECRET, query.signing_text(), query.sig)
    assert query.request.seed == seed
    if key is not None:
        assert cache_key(query.request, MODEL_SOURCE) == key


class LaterRequest(ImageRequest):
    """ImageRequest as a later release may grow it: new fields with defaults."""

    lora: str | None = None
    control_strength: float = Field(default=1.0, ge=0.0)


@pytest.mark.parametrize(("text", "url", "seed", "key"), PUBLISHED)
def test_fields_added_later_change_nothing_while_left_at_their_defaults(
        settings: Settings, text: str, url: str, seed: int | None, key: str | None) -> None:
    query = read_query(parse_qs(urlsplit(url).query), Limits.from_settings(settings))
    later = LaterRequest(**query.request.model_dump())
    assert later.canonical_json() == query.request.canonical_json()
    assert derived_seed(later.model_copy(update={"seed": None})) == derived_seed(
        query.request.model_copy(update={"seed": None}))
    if key is not None:
        assert cache_key(later, MODEL_SOURCE) == key
    # Once set, a new field is part of the identity: another image, another key.
    styled = later.model_copy(update={"lora": "ink"})
    assert derived_seed(styled.model_copy(update={"seed": None})) != derived_seed(
        later.model_copy(update={"seed": None}))
    if key is not None:
        assert cache_key(styled, MODEL_SOURCE) != key
