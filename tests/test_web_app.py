"""The web app over real HTTP with a real Redis, no worker: admission, keys, refusals, API.

Without a generate worker every job stays queued, which is what these tests need: they look
at what the app decides before an image exists. tests/test_web.py runs the full path.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from bots.errors import PromptError
from bots.grammar import request_from_fields
from bots.limits import Limits
from bots.web.signing import signed_url
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.queue import JobQueue
from tasks.names import RATELIMIT_KEY
from tasks.worker.celery_app import create_celery
from tests.fixtures_redis import ROOT, imagine_command, wait_for
from tests.web_support import with_settings

JSON = {"Accept": "application/json"}
FOX = {"prompt": "a red fox", "ar": "16:9", "wait": "0"}


def make_queue(settings: Settings) -> JobQueue:
    return JobQueue(settings, redis_client(settings), create_celery(settings))


def is_placeholder(response: requests.Response) -> bool:
    return (response.status_code == 200 and response.headers["Content-Type"] == "image/png"
            and response.headers["Cache-Control"] == "no-store"
            and int(response.headers["Retry-After"]) >= 1
            and "X-Imagine-Job" in response.headers)


def grammar_message(fields: dict[str, str]) -> str:
    with pytest.raises(PromptError) as caught:
        request_from_fields(fields, Limits(default_size=64, default_steps=2))
    return caught.value.message


def test_every_grammar_error_is_a_400_as_json_or_as_a_png(serve_app: Callable[..., str],
                                                         settings: Settings) -> None:
    base = serve_app()
    grammar_cases = [
        {"prompt": ""},
        {"prompt": "a fox", "ar": "17:1"},
        {"prompt": "a fox", "ar": "wide"},
        {"prompt": "a fox", "size": "big"},
        {"prompt": "a fox", "ar": "1:1", "size": "64"},
        {"prompt": "a fox", "seed": "-1"},
        {"prompt": "a fox", "seed": str(2**32)},
        {"prompt": "a fox", "steps": "0"},
        {"prompt": "a fox", "steps": "51"},
        {"prompt": "a fox", "cfg": "31"},
        {"prompt": "a fox", "cfg": "nan"},
        {"prompt": "a fox", "sampler": "eulr"},
        {"prompt": "a fox", "model": "sdxl"},
        {"prompt": "a fox", "colour": "red"},
        {"prompt": "a fox --sed 3"},
        {"prompt": "a fox --steps"},
        {"prompt": "a fox --seed 1", "seed": "2"},
        {"prompt": "x" * 1001},
    ]
    for fields in grammar_cases:
        expected = grammar_message(fields)
        answer = requests.get(base, params=fields, headers=JSON, timeout=30)
        assert answer.status_code == 400, fields
        assert answer.json() == {"error": expected, "status": 400}
        assert answer.headers["Cache-Control"] == "no-store"

    # Errors of the URL itself, in the grammar's style.
    for query in ("", "?prompt=a+fox&n=2", "?prompt=a+fox+--n+2", "?prompt=a&seed=1&seed=2",
                  "?prompt=a+fox&wait=soon", "?prompt=a+fox&wait=-1"):
        answer = requests.get(base + "/" + query, headers=JSON, timeout=30)
        assert answer.status_code == 400, query
        assert len(answer.json()["error"]) > 20, query

    # A client that wants an image (an <img> tag, a Markdown proxy) gets the message drawn.
    answer = requests.get(base, params={"prompt": "a fox", "ar": "17:1"},
                          headers={"Accept": "image/avif,image/webp,*/*"}, timeout=30)
    assert answer.status_code == 400 and answer.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).format == "PNG"
    assert make_queue(settings).queued_count() == 0


def test_concurrent_identical_misses_make_exactly_one_job(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(max_jobs_per_user=10, web_threads=8)
    queue = make_queue(settings)
    query = {"prompt": "a red fox", "ar": "16:9", "wait": "1"}
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: requests.get(base, params=query, timeout=60),
                                range(20)))
    assert all(is_placeholder(a) for a in answers), [a.status_code for a in answers]
    job_ids = {a.headers["X-Imagine-Job"] for a in answers}
    assert len(job_ids) == 1 and queue.queued_count() == 1
    job = queue.jobs.get(job_ids.pop())
    assert job.requester.platform == "web" and job.requester.user == "127.0.0.1"
    assert job.request.seed is not None  # derived from the parameters, not random
    assert Image.open(io.BytesIO(answers[0].content)).format == "PNG"

    # The same request spelled differently is the same key: no new job.
    for spelling in ({"prompt": "a red fox --ar 16:9", "wait": "0"},
                     {"prompt": "  a   red fox ", "AR": "16:9", "wait": "0"},
                     {"prompt": "a red fox", "ar": "16:9", "seed": str(job.request.seed),
                      "wait": "0"}):
        answer = requests.get(base, params=spelling, timeout=30)
        assert is_placeholder(answer) and answer.headers["X-Imagine-Job"] == job.id, spelling
    assert queue.queued_count() == 1

    # seed=random asks for a new image every time.
    randoms = [requests.get(base, params={**FOX, "seed": "random"}, timeout=30)
               for _ in range(2)]
    assert all(is_placeholder(a) for a in randoms)
    assert len({a.headers["X-Imagine-Job"] for a in randoms} | {job.id}) == 3

    # The model's identity is part of the key: another IMAGINE_MODEL, another job.
    other = serve_app(max_jobs_per_user=10, model=str(settings.model) + "-v2")
    answer = requests.get(other, params=FOX, timeout=30)
    assert is_placeholder(answer) and answer.headers["X-Imagine-Job"] != job.id
    assert queue.queued_count() == 4

    # Scripts that prefer JSON get 202 with the job instead of a picture.
    answer = requests.get(base, params=FOX, headers=JSON, timeout=30)
    assert answer.status_code == 202 and answer.json()["job"] == job.id


def test_unsigned_or_forged_urls_are_refused_when_a_secret_is_set(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(url_secret="correct horse")
    signed_settings = with_settings(settings, url_secret="correct horse")
    url = signed_url(signed_settings, "a red fox --ar 16:9 --no text")
    parts = urlsplit(url)
    signed = f"{base}/?{parts.query}&wait=0"
    sig = dict(p.split("=", 1) for p in parts.query.split("&"))["sig"]

    assert requests.get(base, params=FOX, headers=JSON, timeout=30).status_code == 403
    forged = requests.get(base, params={**FOX, "sig": "0" * 32}, timeout=30)
    assert forged.status_code == 403 and forged.headers["Content-Type"] == "image/png"
    # A valid signature does not carry over to other parameters.
    other = {"prompt": "a red fox --ar 16:9 --no text --seed 1", "sig": sig}
    assert requests.get(base, params=other, headers=JSON, timeout=30).status_code == 403

    first = requests.get(signed, timeout=30)
    assert is_placeholder(first)
    # The signature covers the meaning, not the spelling.
    same = requests.get(base, params={"prompt": "a red fox", "ar": "16:9", "no": "text",
                                      "sig": sig, "wait": "0"}, timeout=30)
    assert is_placeholder(same) and same.headers["X-Imagine-Job"] == first.headers["X-Imagine-Job"]


def test_cli_sign_url_prints_a_url_the_server_accepts(
        serve_app: Callable[..., str], imagine_env: dict[str, str]) -> None:
    base = serve_app(url_secret="s3cret")
    env = {**imagine_env, "IMAGINE_URL_SECRET": "s3cret", "IMAGINE_PUBLIC_URL": base}
    printed = subprocess.run(imagine_command("sign-url", "a lighthouse at dusk --ar 3:2"),
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
                             check=True).stdout.strip()
    assert printed.startswith(base + "/?prompt=") and "&sig=" in printed
    assert is_placeholder(requests.get(printed + "&wait=0", timeout=30))
    wrong = subprocess.run(imagine_command("sign-url", "a lighthouse --ar 9:1"), env=env,
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "--ar must be" in wrong.stderr


def test_misses_are_rate_limited_per_address_and_a_full_queue_is_503(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(rate_limit_per_minute=2, max_jobs_per_user=10)
    for prompt in ("one", "two"):
        assert is_placeholder(requests.get(base, params={"prompt": prompt, "wait": "0"},
                                           timeout=30))
    limited = requests.get(base, params={"prompt": "three", "wait": "0"}, headers=JSON,
                           timeout=30)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "try again" in limited.json()["error"]
    # Asking again for an image already on its way costs nothing.
    assert is_placeholder(requests.get(base, params={"prompt": "one", "wait": "0"}, timeout=30))

    # The bucket lives in Redis, shared by every web process: empty it for the next app.
    client = redis_client(settings)
    client.delete(*client.keys(RATELIMIT_KEY.format("*")))

    # X-Forwarded-For names the client only when the operator says a proxy sets it.
    proxied = serve_app(rate_limit_per_minute=1, max_jobs_per_user=10,
                        trust_forwarded_for=True)
    def via(address: str, prompt: str) -> int:
        return requests.get(proxied, params={"prompt": prompt, "wait": "0"}, timeout=30,
                            headers={"X-Forwarded-For": address}).status_code
    assert [via("10.0.0.1", "five"), via("10.0.0.1", "six"), via("10.0.0.2", "six")] == \
        [200, 429, 200]
    client.delete(*client.keys(RATELIMIT_KEY.format("*")))
    direct = serve_app(rate_limit_per_minute=1, max_jobs_per_user=10)
    assert [requests.get(direct, params={"prompt": p, "wait": "0"}, timeout=30,
                         headers={"X-Forwarded-For": a}).status_code
            for p, a in (("seven", "10.0.0.3"), ("eight", "10.0.0.4"))] == [200, 429]
    client.delete(*client.keys(RATELIMIT_KEY.format("*")))
    full = serve_app(max_queue=2, max_jobs_per_user=10)
    answer = requests.get(full, params={"prompt": "four", "wait": "0"}, headers=JSON,
                          timeout=30)
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
    assert "queue is full" in answer.json()["error"]


def test_waiting_misses_never_take_the_threads_that_serve_everything_else(
        serve_app: Callable[..., str]) -> None:
    # 5 threads, 4 kept free of waiters: one request may wait, the next miss must not.
    base = serve_app(web_threads=5, max_wait=60.0, max_jobs_per_user=10)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(requests.get, base, params={"prompt": "slow", "wait": "20"},
                              timeout=90)
        wait_for(lambda: queue_depth_metric(base) == 1, 30, message="the first miss's job")
        second = requests.get(base, params={"prompt": "other", "wait": "20"}, timeout=90)
        health = requests.get(f"{base}/healthz", timeout=30)
        # Answered while the first request still waits (no worker, so it waits it all).
        assert not waiting.done()
        assert is_placeholder(second) and health.status_code == 503
        assert is_placeholder(waiting.result())


def queue_depth_metric(base: str) -> int:
    samples = {s.name: s.value for family in text_string_to_metric_families(
        requests.get(f"{base}/metrics", timeout=30).text) for s in family.samples}
    return int(samples["imagine_queue_depth"])


def test_api_create_poll_cancel(serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(max_jobs_per_user=10, outbound_allow="127.0.0.1")  # webhook below
    api = f"{base}/api/v1/jobs"
    created = requests.post(api, json={"prompt": "a red fox --seed 5", "ar": "3:2", "n": 2},
                            timeout=30)
    assert created.status_code == 202
    job = created.json()
    assert job["status"] == "queued" and job["position"] == 1 and job["eta_seconds"] > 0
    assert job["platform"] == "api" and job["images"] == []
    assert created.headers["Location"] == job["links"]["self"]
    assert job["links"]["self"].endswith(f"/api/v1/jobs/{job['id']}")

    polled = requests.get(f"{api}/{job['id']}", timeout=30).json()
    assert polled["status"] == "queued" and "--seed 5" in polled["prompt"]

    cancelled = requests.delete(f"{api}/{job['id']}", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert requests.delete(f"{api}/{job['id']}", timeout=30).status_code == 409
    assert requests.get(f"{api}/0123", timeout=30).status_code == 404

    hooked = requests.post(api, json={"prompt": "a fox", "webhook": "http://127.0.0.1:9/hook"},
                           timeout=30).json()
    record = make_queue(settings).jobs.get(hooked["id"])
    assert record.requester.platform == "webhook"
    assert record.requester.extra == {"url": "http://127.0.0.1:9/hook"}

    for body, word in (({"prompt": "a fox", "ar": "9:1"}, "--ar"),
                       ({"prompt": "a fox", "colour": "red"}, "colour"),
                       ({"ar": "1:1"}, "prompt"),
                       ({"prompt": "a fox", "steps": "many"}, "steps"),
                       ({"prompt": "a fox", "webhook": "ftp://x"}, "webhook"),
                       ([1, 2], "JSON object")):
        answer = requests.post(api, json=body, timeout=30)
        assert answer.status_code == 400 and word in answer.json()["error"], body
    assert requests.post(api, data="prompt=a fox", timeout=30).status_code == 400


def test_api_bearer_token(serve_app: Callable[..., str]) -> None:
    base = serve_app(api_token="t0ken")
    api = f"{base}/api/v1/jobs"
    refused = requests.post(api, json={"prompt": "a fox"}, timeout=30)
    assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"]
    wrong = requests.post(api, json={"prompt": "a fox"},
                          headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    ok = requests.post(api, json={"prompt": "a fox"},
                       headers={"Authorization": "Bearer t0ken"}, timeout=30)
    assert ok.status_code == 202
    assert requests.get(f"{base}/api/v1/openapi.json", timeout=30).status_code == 200


def test_metrics_count_cache_results_and_show_the_queue(serve_app: Callable[..., str]) -> None:
    base = serve_app(max_jobs_per_user=10)
    for _ in range(2):
        requests.get(base, params=FOX, timeout=30)
    requests.get(base, params={"prompt": "a fox", "ar": "17:1"}, timeout=30)
    text = requests.get(f"{base}/metrics", timeout=30)
    assert text.headers["Content-Type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text.text) for s in family.samples}
    assert samples[("imagine_cache_total", (("result", "miss"),))] == 2
    assert samples[("imagine_cache_total", (("result", "hit"),))] == 0
    assert samples[("imagine_web_events_total", (("event", "bad_request"),))] == 1
    assert samples[("imagine_web_events_total", (("event", "placeholder"),))] == 2
    assert samples[("imagine_queue_depth", ())] == 1
    assert samples[("imagine_generation_seconds_count", ())] == 0
    health = requests.get(f"{base}/healthz", timeout=30)
    assert health.status_code == 503 and health.json()["generate_workers"] == 0


def test_schemathesis_finds_no_server_error(serve_app: Callable[..., str],
                                            tmp_path: object) -> None:
    # Limits high enough that a 503 (full queue) cannot happen; /healthz is left out
    # because without a worker its 503 is the right answer.
    base = serve_app(embed_wait=0.0, max_wait=0.0, rate_limit_per_minute=100_000,
                     max_jobs_per_user=100_000, max_queue=100_000)
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/api/v1/openapi.json",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance,response_headers_conformance",
         "--max-examples", "25", "--seed", "1", "--no-shrink", "--workers", "1",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "30",
         "--exclude-path", "/healthz"],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
