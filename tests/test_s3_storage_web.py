"""The web app with images in a bucket (moto's S3 server): streamed with the folder's headers,
or a redirect to a presigned URL; prompt-URL hits from memory; an outage answered with 503."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import requests

from bots.grammar import request_from_fields
from bots.limits import Limits
from bots.web.cache import PromptCache
from bots.web.query import cache_key
from bots.web.s3_images import CHECK_SECONDS, REDIRECT_MAX_AGE, RemoteImages
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.s3_storage import S3Storage
from tasks.core.storage import open_storage
from tasks.names import URL_CACHE_KEY
from tests.fixtures_s3 import S3Server
from tests.web_support import with_settings

PNG = b"\x89PNG kept in a bucket" * 50


def bucket_settings(settings: Settings, s3_env: dict[str, str], **extra: object) -> Settings:
    return with_settings(settings, storage_url=s3_env["IMAGINE_STORAGE_URL"],
                         s3_endpoint=s3_env["IMAGINE_S3_ENDPOINT"], **extra)


def bucket(settings: Settings) -> S3Storage:
    store = open_storage(settings)
    assert isinstance(store, S3Storage)
    return store


def cached(settings: Settings, prompt: str) -> str:
    """An image already drawn for `prompt`, in the bucket and in the URL cache."""
    request = request_from_fields({"prompt": prompt}, Limits.from_settings(settings)).seeded()
    key = cache_key(request, settings.model_sources["default"])
    image = bucket(settings).put(PNG)
    PromptCache(redis_client(settings), 60).remember(key, "job0", image)
    return image


def test_images_are_streamed_with_the_folders_headers(
        serve_app: Callable[..., str], settings: Settings, s3_env: dict[str, str]) -> None:
    s3 = bucket_settings(settings, s3_env)
    base = serve_app(**s3.model_dump(include={"storage_url", "s3_endpoint"}))
    name = bucket(s3).put(PNG)
    answer = requests.get(f"{base}/images/{name}.png", timeout=30)
    assert answer.status_code == 200 and answer.content == PNG
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["ETag"] == f'"{name}"' and "immutable" in answer.headers["Cache-Control"]
    assert answer.headers["Content-Length"] == str(len(PNG))
    again = requests.get(f"{base}/images/{name}.png", headers={"If-None-Match": f'"{name}"'},
                         timeout=30)
    assert again.status_code == 304 and again.content == b""
    part = requests.get(f"{base}/images/{name}.png", headers={"Range": "bytes=0-3"}, timeout=30)
    assert part.status_code == 206 and part.content == PNG[:4]
    head = requests.head(f"{base}/images/{name}.png", timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(PNG))
    missing = requests.get(f"{base}/images/{'0' * 32}.png", timeout=30)
    assert missing.status_code == 404


def test_prompt_url_hits_come_from_the_bucket_then_from_memory(
        serve_app: Callable[..., str], settings: Settings, s3_env: dict[str, str]) -> None:
    s3 = bucket_settings(settings, s3_env)
    base = serve_app(**s3.model_dump(include={"storage_url", "s3_endpoint"}))
    image = cached(s3, "a fox in a bucket")
    first = requests.get(f"{base}/?prompt=a+fox+in+a+bucket", timeout=30)  # Flask path
    redis_client(s3).delete(URL_CACHE_KEY.format(
        cache_key(request_from_fields({"prompt": "a fox in a bucket"},
                                      Limits.from_settings(s3)).seeded(),
                  s3.model_sources["default"])))  # only the memo can answer now
    hit = requests.get(f"{base}/?prompt=a+fox+in+a+bucket", timeout=30)
    assert first.status_code == hit.status_code == 200 and first.content == hit.content == PNG
    for header in ("ETag", "Cache-Control", "X-Imagine-Image", "Content-Type",
                   "Content-Length"):
        assert hit.headers[header] == first.headers[header], header
    assert hit.headers["X-Imagine-Image"] == image


def test_redirect_mode_sends_a_presigned_url_cached_for_less_than_its_life(
        serve_app: Callable[..., str], settings: Settings, s3_env: dict[str, str]) -> None:
    s3 = bucket_settings(settings, s3_env, s3_redirect=True)
    base = serve_app(**s3.model_dump(include={"storage_url", "s3_endpoint", "s3_redirect"}))
    name = cached(s3, "a redirected fox")
    for url in (f"{base}/images/{name}.png", f"{base}/?prompt=a+redirected+fox",
                f"{base}/?prompt=a+redirected+fox"):  # view, Flask path, then the hit path
        answer = requests.get(url, timeout=30, allow_redirects=False)
        assert answer.status_code == 302, url
        assert answer.headers["X-Imagine-Image"] == name
        location = answer.headers["Location"]
        life = int(parse_qs(urlsplit(location).query)["X-Amz-Expires"][0])
        assert answer.headers["Cache-Control"] == f"public, max-age={REDIRECT_MAX_AGE}"
        assert REDIRECT_MAX_AGE < life
        image = requests.get(location, timeout=30)
        assert image.content == PNG and "immutable" in image.headers["Cache-Control"]
    assert requests.get(f"{base}/?prompt=a+redirected+fox", timeout=30).content == PNG


def test_the_bucket_down_is_a_503_then_images_again(
        serve_app: Callable[..., str], settings: Settings, s3_env: dict[str, str],
        s3_server: S3Server) -> None:
    s3 = bucket_settings(settings, s3_env)
    base = serve_app(**s3.model_dump(include={"storage_url", "s3_endpoint"}))
    name = bucket(s3).put(PNG)
    s3_server.stop()
    try:
        down = requests.get(f"{base}/images/{name}.png", timeout=60)
        assert down.status_code == 503 and down.headers["Retry-After"]
        assert "storage" in down.text and down.headers["Cache-Control"] == "no-store"
    finally:
        s3_server.start()
    assert requests.get(f"{base}/images/{name}.png", timeout=30).content == PNG


def test_a_deleted_object_is_noticed_within_the_check_interval(
        settings: Settings, s3_env: dict[str, str]) -> None:
    store = bucket(bucket_settings(settings, s3_env))
    now = [0.0]
    remote = RemoteImages(store, redirect=False, clock=lambda: now[0])
    hot: dict[str, bytes] = {}

    class Hot:
        def get(self, name: str) -> bytes | None:
            return hot.get(name)

        def put(self, name: str, data: bytes) -> None:
            hot[name] = data

    name = store.put(PNG)
    assert remote.hit(name, Hot()) == PNG and hot[name] == PNG
    store.delete(name)
    now[0] = CHECK_SECONDS / 2
    assert remote.hit(name, Hot()) == PNG  # from memory, not asked again yet
    now[0] = CHECK_SECONDS + 1
    assert remote.hit(name, Hot()) is None  # gone: the Flask path draws it again
