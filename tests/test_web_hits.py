"""Prompt-URL hits answered in front of Flask (bots.web.hits): the same answers as the Flask
path (headers, 304, HEAD, Range), removed files drawn again, and bounded memory."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import requests

from bots.grammar import request_from_fields
from bots.limits import Limits
from bots.web.cache import PromptCache
from bots.web.hits import HotFiles, query_args
from bots.web.query import cache_key
from bots.web.server import create_server
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.storage import Storage
from tasks.names import URL_CACHE_KEY
from tests.web_support import with_settings

PNG = b"\x89PNG not really, but stored" * 40


def cached_image(settings: Settings, prompt: str, data: bytes = PNG) -> tuple[str, str]:
    """An image already drawn for `prompt`: (its name, its URL-cache key)."""
    request = request_from_fields({"prompt": prompt}, Limits.from_settings(settings)).seeded()
    key = cache_key(request, settings.model_sources["default"])
    image = Storage(settings.images_dir).put(data)
    PromptCache(redis_client(settings), 60).remember(key, "job0", image)
    return image, key


def test_a_memoised_hit_answers_like_the_flask_path_without_redis(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app()
    image, key = cached_image(settings, "a red fox")
    first = requests.get(f"{base}/?prompt=a+red+fox", timeout=30)  # Flask path: memoised
    redis_client(settings).delete(URL_CACHE_KEY.format(key))  # only the memo can answer now
    hit = requests.get(f"{base}/?prompt=a++red+fox&wait=5", timeout=30)
    assert first.status_code == hit.status_code == 200
    assert hit.content == first.content == PNG
    for header in ("ETag", "Cache-Control", "X-Imagine-Image", "Content-Type"):
        assert hit.headers[header] == first.headers[header], header
    assert hit.headers["ETag"] == f'"{image}"'
    assert int(hit.headers["Content-Length"]) == len(PNG)

    etag = hit.headers["ETag"]
    conditional = requests.get(f"{base}/?prompt=a+red+fox", timeout=30,
                               headers={"If-None-Match": f'"other", {etag}'})
    assert conditional.status_code == 304 and conditional.content == b""
    assert conditional.headers["ETag"] == etag
    head = requests.head(f"{base}/?prompt=a+red+fox", timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(PNG)) and head.headers["ETag"] == etag
    # A Range request goes on to Flask's send_file, which answers it.
    part = requests.get(f"{base}/?prompt=a+red+fox", headers={"Range": "bytes=0-3"},
                        timeout=30)
    assert part.status_code == 206 and part.content == PNG[:4]


def test_a_removed_image_is_not_served_from_memory(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app()
    image, _key = cached_image(settings, "a blue fox")
    assert requests.get(f"{base}/?prompt=a+blue+fox", timeout=30).status_code == 200
    assert requests.get(f"{base}/?prompt=a+blue+fox", timeout=30).content == PNG
    Storage(settings.images_dir).path(image).unlink()
    # No worker runs: the Flask path forgets the entry and submits a job again.
    again = requests.get(f"{base}/?prompt=a+blue+fox&wait=0", timeout=30)
    assert again.headers["Cache-Control"] == "no-store" and "ETag" not in again.headers


def test_an_unknown_or_bad_query_still_gets_the_flask_answers(
        serve_app: Callable[..., str]) -> None:
    base = serve_app()
    missing = requests.get(f"{base}/?ar=1:1", headers={"Accept": "application/json"},
                           timeout=30)
    assert missing.status_code == 400 and "prompt" in missing.json()["error"]
    repeated = requests.get(f"{base}/?prompt=a&prompt=b", headers={"Accept": "application/json"},
                            timeout=30)
    assert repeated.status_code == 400


def test_query_args_read_like_werkzeug() -> None:
    assert query_args("prompt=a+red%20fox&Ar=16:9&flag&prompt=x") == {
        "prompt": ["a red fox", "x"], "Ar": ["16:9"], "flag": [""]}
    assert query_args("prompt=%FF") == {"prompt": ["%FF"]}  # invalid UTF-8 stays encoded


def test_hot_files_are_bounded_in_bytes_and_drop_the_oldest() -> None:
    hot = HotFiles(max_bytes=1000)
    for i in range(10):
        hot.put(f"{i:032x}", bytes(300))
        assert hot.bytes <= 1000
    assert len(hot) == 3 and hot.get(f"{9:032x}") is not None and hot.get(f"{0:032x}") is None
    hot.put("big", bytes(2000))
    assert hot.get("big") is None


def test_waitress_sends_a_large_hit_whole_and_again(settings: Settings) -> None:
    """Under waitress the hit goes out through its file wrapper, in blocks."""
    data = os.urandom(700_000)  # several blocks, and more than waitress buffers in memory
    image, _key = cached_image(settings, "a green fox", data)
    server = create_server(with_settings(settings, web_host="127.0.0.1", web_threads=4), port=0)
    threading.Thread(target=server.run, name="waitress-hits", daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.effective_port}/?prompt=a+green+fox"
        for _ in range(3):  # the first through Flask, the others from memory
            answer = requests.get(url, timeout=30)
            assert answer.status_code == 200 and answer.content == data
            assert answer.headers["X-Imagine-Image"] == image
        head = requests.head(url, timeout=30)
        assert head.content == b"" and head.headers["Content-Length"] == str(len(data))
    finally:
        server.close()
