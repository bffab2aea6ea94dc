"""Hardening (issue #11), requests in: sizes, signatures, limits, ownership, health, metrics.

The real app over real HTTP with a real Redis and no worker (as tests/test_web_app.py); the
body limits also against waitress, the server `imagine web` runs.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from bots.grammar import request_from_fields
from bots.limits import Limits
from bots.web.cache import PromptCache
from bots.web.guards import SLACK_BODY, image_body_limit, query_limit
from bots.web.query import cache_key, memo_key
from bots.web.server import create_server
from bots.web.signing import signed_url
from bots.web.state import Memo
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.storage import Storage
from tasks.names import RATELIMIT_KEY, URL_CACHE_KEY
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackSender
from tests.fixtures_redis import free_port
from tests.web_support import with_settings

JSON = {"Accept": "application/json"}
HUGE = 150_000_000  # what cost 600 MiB of memory before it was refused


def raw_request(base: str, head: str, body: bytes = b"", timeout: float = 10) -> tuple[int, bytes]:
    """Send `head` (and `body`) over a plain socket; the status and the whole answer."""
    where = urlsplit(base)
    with socket.create_connection((where.hostname, where.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _complete(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pytest.fail(f"no complete answer within {timeout} s: {answer[:200]!r}")
    return int(answer.split(b" ", 2)[1]), answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False  # until the server closes the connection


def post_head(path: str, length: int | None, *, chunked: bool = False) -> str:
    size = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\n{size}\r\n")


# --- sizes ----------------------------------------------------------------------------


def test_a_body_over_the_route_limit_is_a_413_before_it_is_sent(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(max_upload_bytes=1024)
    small = with_settings(settings, max_upload_bytes=1024)
    started = time.monotonic()
    # Headers only: the server must answer without waiting for (or reading) the body.
    status, answer = raw_request(base, post_head("/api/v1/jobs", HUGE))
    assert status == 413 and b'"status":413' in answer.replace(b" ", b"")
    assert time.monotonic() - started < 5
    limit = image_body_limit(small)
    assert raw_request(base, post_head("/api/v1/jobs", limit + 1))[0] == 413
    assert raw_request(base, post_head("/api/v1/jobs/0123/actions", limit + 1))[0] == 413
    # Routes that take no images take a small body; Slack's endpoint (unmounted here) too.
    for path in ("/healthz", "/api/v1/jobs/0123", "/slack/events", "/"):
        assert raw_request(base, post_head(path, 100_000))[0] == 413, path
    # Within the limit the body is read and judged on its content.
    body = json.dumps({"prompt": "a fox", "colour": "x" * (limit - 100)}).encode()
    assert len(body) <= limit
    status, _ = raw_request(base, post_head("/api/v1/jobs", len(body)), body)
    assert status == 400


def test_a_chunked_body_stops_at_the_route_limit(serve_app: Callable[..., str],
                                                 settings: Settings) -> None:
    base = serve_app(max_upload_bytes=1024)
    limit = image_body_limit(with_settings(settings, max_upload_bytes=1024))
    payload = json.dumps({"prompt": "a fox", "colour": "x" * (2 * limit)}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 8192]), payload[i:i + 8192])
                      for i in range(0, len(payload), 8192)) + b"0\r\n\r\n"
    status, _ = raw_request(base, post_head("/api/v1/jobs", None, chunked=True), chunks)
    assert status == 413


@pytest.fixture
def waitress_base(settings: Settings) -> Iterator[str]:
    server = create_server(with_settings(settings, web_host="127.0.0.1", web_threads=4),
                           port=0)
    thread = threading.Thread(target=server.run, name="waitress-test", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


def test_waitress_refuses_a_body_larger_than_any_route_takes_unread(
        waitress_base: str) -> None:
    started = time.monotonic()
    status, _ = raw_request(waitress_base, post_head("/api/v1/jobs", HUGE))
    assert status == 413 and time.monotonic() - started < 5
    status, _ = raw_request(waitress_base, post_head("/healthz", 100_000), b"x" * 100_000)
    assert status == 413  # the app's own limit for this route
    assert requests.get(f"{waitress_base}/?prompt=a+fox&wait=0", timeout=30).status_code == 200


def test_query_strings_are_capped_from_the_prompt_length(serve_app: Callable[..., str],
                                                          settings: Settings) -> None:
    base = serve_app(max_jobs_per_user=10)
    longest = "狐" * settings.max_prompt_length  # 9 bytes a character, percent-encoded
    fits = f"{base}/?prompt={quote(longest)}&no={quote(longest)}&ar=16:9&seed=7&wait=0"
    assert requests.get(fits, headers=JSON, timeout=30).status_code == 202
    over = f"{base}/?prompt={quote(longest)}&pad={'x' * query_limit(settings)}"
    refused = requests.get(over, headers=JSON, timeout=30)
    assert refused.status_code == 414 and "query string" in refused.json()["error"]
    as_image = requests.get(over, timeout=30)
    assert as_image.status_code == 414 and as_image.headers["Content-Type"] == "image/png"
    api = requests.get(f"{base}/api/v1/jobs/0123?x={'y' * query_limit(settings)}", timeout=30)
    assert api.status_code == 414 and api.json()["status"] == 414


# --- prompt URLs: signatures and the memo ---------------------------------------------


@pytest.mark.parametrize("sig", ["%C3%A9", "zz", "%00", "0" * 200, "%FF%FE"])
def test_a_signature_that_is_not_hex_is_a_403(serve_app: Callable[..., str], sig: str) -> None:
    base = serve_app(url_secret="s3cret")
    answer = requests.get(f"{base}/?prompt=a+fox&wait=0&sig={sig}", headers=JSON, timeout=30)
    assert answer.status_code == 403 and "signature" in answer.json()["error"]


def test_padding_a_prompt_changes_neither_signature_nor_image(
        serve_app: Callable[..., str], settings: Settings) -> None:
    signed = with_settings(settings, url_secret="s3cret")
    base = serve_app(url_secret="s3cret")
    sig = signed_url(signed, "a red fox").rsplit("sig=", 1)[1]
    # An image already made for this request (stored, and remembered in the URL cache).
    limits = Limits.from_settings(settings)
    request = request_from_fields({"prompt": "a red fox"}, limits).seeded()
    key = cache_key(request, settings.model_sources["default"])
    image = Storage(settings.images_dir).put(b"\x89PNG not really, but stored")
    PromptCache(redis_client(settings), 60).remember(key, "job0", image)
    first = requests.get(f"{base}/?prompt=a+red+fox&sig={sig}", timeout=30)
    assert first.status_code == 200 and first.headers["X-Imagine-Image"] == image
    # The Redis entry goes; the in-process memo is keyed by the request, not its spelling.
    redis_client(settings).delete(URL_CACHE_KEY.format(key))
    for spelling in ("a++red+++fox+", "+a%09red%20%20fox", "a%0Ared+fox"):
        again = requests.get(f"{base}/?prompt={spelling}&sig={sig}", timeout=30)
        assert again.status_code == 200, spelling
        assert again.headers["X-Imagine-Image"] == image


def test_spellings_of_one_prompt_url_share_one_memo_key() -> None:
    padded = memo_key({"Prompt": ["  a   red\tfox "], "ar": ["16:9"], "wait": ["3"]})
    assert padded == memo_key({"ar": ["16:9"], "prompt": ["a red fox"]})
    assert padded != memo_key({"ar": ["16:9"], "prompt": ["a red fox"], "sig": ["ab"]})
    assert memo_key({"prompt": ["a fox"], "seed": [" Random "]}) is None
    assert memo_key({"prompt": ["a fox", "a cat"]}) is None


def test_the_memo_of_made_images_is_bounded_in_bytes() -> None:
    memo = Memo(max_bytes=20_000)
    for i in range(1000):
        memo.put(f"{i:064x}", f"{i:032x}")
        assert memo.bytes <= 20_000
    assert 0 < len(memo) < 1000 and memo.get(f"{999:064x}") == f"{999:032x}"


# --- limits: 429 for one client's share, 503 for the queue, IPv6 /64 --------------------


def test_over_the_per_user_limit_is_a_429_and_a_full_queue_a_503(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(max_jobs_per_user=1)
    api = f"{base}/api/v1/jobs"
    assert requests.post(api, json={"prompt": "one"}, timeout=30).status_code == 202
    over = requests.post(api, json={"prompt": "two"}, timeout=30)
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert "unfinished jobs" in over.json()["error"]
    # Prompt URLs: a client over its limit gets the PNG card with the 429 (the queue's
    # admission counts prompt-URL jobs in a shared pool; the client's limit is the rate).
    urls = serve_app(rate_limit_per_minute=1)
    assert requests.get(urls, params={"prompt": "one", "wait": "0"}, timeout=30).ok
    as_image = requests.get(urls, params={"prompt": "three", "wait": "0"}, timeout=30)
    assert as_image.status_code == 429 and as_image.headers["Content-Type"] == "image/png"
    assert int(as_image.headers["Retry-After"]) >= 1

    client = redis_client(settings)  # the rate buckets are shared: empty them
    client.delete(*client.keys(RATELIMIT_KEY.format("*")))
    full = serve_app(max_queue=2, max_jobs_per_user=10)  # two jobs wait already
    refused = requests.post(f"{full}/api/v1/jobs", json={"prompt": "four"}, timeout=30)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "queue is full" in refused.json()["error"]


def test_rate_limits_count_an_ipv6_slash_64_as_one_client(
        serve_app: Callable[..., str]) -> None:
    base = serve_app(rate_limit_per_minute=1, max_jobs_per_user=10, trust_forwarded_for=True)

    def miss(address: str, prompt: str) -> int:
        return requests.get(base, params={"prompt": prompt, "wait": "0"}, timeout=30,
                            headers={"X-Forwarded-For": address}).status_code

    assert miss("2001:db8:1:2::1", "one") == 200
    assert miss("2001:db8:1:2:ffff::9", "two") == 429  # same /64, another address
    assert miss("2001:db8:1:3::1", "three") == 200  # the next /64
    assert miss("10.0.0.1", "four") == 200
    assert miss("10.0.0.2", "five") == 200  # IPv4 stays per address
    api = requests.post(f"{base}/api/v1/jobs", json={"prompt": "six"}, timeout=30,
                        headers={"X-Forwarded-For": "2001:db8:1:2:abcd::1"})
    assert api.status_code == 429


# --- who may cancel ---------------------------------------------------------------------


def test_only_the_owner_may_cancel_and_ids_are_unguessable(
        serve_app: Callable[..., str]) -> None:
    base = serve_app(max_jobs_per_user=10, trust_forwarded_for=True)
    api = f"{base}/api/v1/jobs"

    def as_client(address: str) -> dict[str, str]:
        return {"X-Forwarded-For": address}

    job = requests.post(api, json={"prompt": "a fox"}, headers=as_client("10.0.0.1"),
                        timeout=30).json()
    assert len(bytes.fromhex(job["id"])) * 8 >= 96
    other = requests.delete(f"{api}/{job['id']}", headers=as_client("10.0.0.2"), timeout=30)
    assert other.status_code == 404
    # Reading and following up stay open to whoever holds the id.
    assert requests.get(f"{api}/{job['id']}", headers=as_client("10.0.0.2"),
                        timeout=30).json()["status"] == "queued"
    mine = requests.delete(f"{api}/{job['id']}", headers=as_client("10.0.0.1"), timeout=30)
    assert mine.status_code == 200 and mine.json()["status"] == "cancelled"


def test_with_a_token_the_token_holder_owns_the_job(serve_app: Callable[..., str]) -> None:
    base = serve_app(max_jobs_per_user=10, api_token="t0ken", trust_forwarded_for=True)
    api = f"{base}/api/v1/jobs"
    auth = {"Authorization": "Bearer t0ken"}
    job = requests.post(api, json={"prompt": "a fox"}, timeout=30,
                        headers={**auth, "X-Forwarded-For": "10.0.0.1"}).json()
    cancelled = requests.delete(f"{api}/{job['id']}", timeout=30,
                                headers={**auth, "X-Forwarded-For": "10.0.0.9"})
    assert cancelled.status_code == 200


# --- health and metrics -----------------------------------------------------------------


def test_healthz_says_ok_or_not_per_part_and_nothing_internal(
        serve_app: Callable[..., str]) -> None:
    health = requests.get(f"{serve_app()}/healthz", timeout=30)
    assert health.status_code == 503
    assert health.json()["parts"] == {"redis": "ok", "generate_workers": "not ok",
                                      "deliver_workers": "not ok"}
    port = free_port()  # nothing listens there
    secret_url = f"redis://:hunter2@127.0.0.1:{port}/0"
    down = requests.get(f"{serve_app(redis_url=secret_url)}/healthz", timeout=60)
    assert down.status_code == 503
    assert down.json() == {"ok": False, "redis": False, "parts": {
        "redis": "not ok", "generate_workers": "not ok", "deliver_workers": "not ok"}}
    assert "hunter2" not in down.text and str(port) not in down.text


def test_metrics_can_require_a_token(serve_app: Callable[..., str]) -> None:
    base = serve_app(metrics_token="m3trics")
    assert requests.get(f"{base}/metrics", timeout=30).status_code == 401
    wrong = requests.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and "Bearer" in wrong.headers["WWW-Authenticate"]
    ok = requests.get(f"{base}/metrics", headers={"Authorization": "Bearer m3trics"},
                      timeout=30)
    assert ok.status_code == 200 and "imagine_queue_depth" in ok.text
    assert requests.get(f"{serve_app()}/metrics", timeout=30).status_code == 200


def test_slack_events_take_a_slack_sized_body(serve_app: Callable[..., str],
                                              slack: FakeSlack) -> None:
    sender = SlackSender(serve_app(slack_signing_secret=SIGNING_SECRET,
                                   slack_bot_token=BOT_TOKEN,
                                   slack_api_url=slack.api_url), slack)
    # Over 1 MiB: refused on the header alone, the body never sent.
    assert raw_request(sender.app_url, post_head("/slack/events", 2 * SLACK_BODY))[0] == 413
    # Larger than other routes take, within Slack's: read, and judged by its signature.
    body = json.dumps({"type": "event_callback", "pad": "x" * 200_000}).encode()
    assert sender.post(body, "application/json", secret="wrong").status_code == 401


# --- Slack half-configured ----------------------------------------------------------------


def test_a_signing_secret_without_bot_token_leaves_the_rest_serving(
        serve_app: Callable[..., str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        base = serve_app(slack_signing_secret="s3cret", max_jobs_per_user=10)
    assert any("SLACK_BOT_TOKEN" in record.getMessage() for record in caplog.records)
    assert requests.get(base, params={"prompt": "a fox", "wait": "0"}, timeout=30).ok
    posted: Any = requests.post(f"{base}/api/v1/jobs", json={"prompt": "a fox"}, timeout=30)
    assert posted.status_code == 202
    assert requests.post(f"{base}/slack/events", data="x", timeout=30).status_code == 404
