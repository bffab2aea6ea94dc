"""The full prompt URL path: `imagine web` (waitress) and a real generate worker on the tiny
model, over real HTTP: placeholder first, then the image, then the same bytes for ever."""

from __future__ import annotations

from collections.abc import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

from settings import Settings
from tasks.core.storage import Storage
from tasks.local.embedded_redis import free_port
from tests.fixtures_redis import Process, wait_for

TIMEOUT = 120.0


def start_web(start_process: Callable[..., Process], **env: str) -> str:
    port = free_port()
    process = start_process("web", "--loglevel", "warning", name="web",
                            env={"IMAGINE_WEB_PORT": str(port), **env})
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if not process.alive():
            raise AssertionError(f"imagine web exited:\n{process.log()[-3000:]}")
        try:
            return requests.get(f"{base}/healthz", timeout=5).status_code in (200, 503)
        except requests.ConnectionError:
            return False

    wait_for(answers, TIMEOUT, interval=0.2, message="imagine web to answer")
    return base


def metric_samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{base}/metrics", timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_prompt_url_placeholder_then_image_then_cached_for_ever(
        start_process: Callable[..., Process], start_worker: Callable[..., Process],
        settings: Settings) -> None:
    base = start_web(start_process, IMAGINE_EMBED_WAIT="0")  # public URL: 127.0.0.1:9
    start_worker("generate")
    health = requests.get(f"{base}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["generate_workers"] == 1

    url = f"{base}/?prompt=a+lighthouse+at+dusk&ar=3:2&steps=2"
    first = requests.get(url, timeout=30)
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/png"
    assert first.headers["Cache-Control"] == "no-store" and "Retry-After" in first.headers
    assert "ETag" not in first.headers  # a placeholder is never a version of the image

    def drawn() -> requests.Response | None:
        answer = requests.get(url, timeout=30)
        return answer if "ETag" in answer.headers else None

    image = wait_for(drawn, TIMEOUT, interval=0.3, message="the prompt URL's image")
    etag = image.headers["ETag"]
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    cache_control = {part.strip() for part in image.headers["Cache-Control"].split(",")}
    assert {"public", "max-age=31536000", "immutable"} <= cache_control
    assert etag == f'"{image.headers["X-Imagine-Image"]}"'  # strong: the content hash

    # The same URL, and the same request spelled otherwise, give identical bytes from storage.
    again = requests.get(url, timeout=30)
    respelled = requests.get(f"{base}/", params={"prompt": "a lighthouse at dusk --steps 2",
                                                 "AR": "3:2"}, timeout=30)
    assert again.content == image.content == respelled.content
    assert again.headers["ETag"] == respelled.headers["ETag"] == etag

    conditional = requests.get(url, headers={"If-None-Match": etag}, timeout=30)
    assert conditional.status_code == 304 and conditional.content == b""
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["ETag"] == etag
    assert int(head.headers["Content-Length"]) == len(image.content)
    stored = requests.get(f"{base}/images/{image.headers['X-Imagine-Image']}.png", timeout=30)
    assert stored.content == image.content and stored.headers["ETag"] == etag
    assert requests.get(f"{base}/images/{'0' * 32}.png", timeout=30).status_code == 404

    # wait=N lets a script wait for a new image instead of taking a placeholder.
    waited = requests.get(f"{base}/", params={"prompt": "a second lighthouse", "wait": "60"},
                          timeout=90)
    assert waited.status_code == 200 and "ETag" in waited.headers


    # The REST API: the same jobs, polled until done; its image URLs use IMAGINE_PUBLIC_URL.
    created = requests.post(f"{base}/api/v1/jobs",
                            json={"prompt": "a red fox --seed 3", "n": 2, "steps": 2},
                            timeout=30)
    assert created.status_code == 202
    job_url = created.headers["Location"].replace("http://127.0.0.1:9", base)

    def finished() -> dict[str, object] | None:
        job = requests.get(job_url, timeout=30).json()
        return job if job["status"] in ("done", "failed", "cancelled") else None

    job = wait_for(finished, TIMEOUT, interval=0.3, message="the API job to finish")
    assert job["status"] == "done", job["error"]
    assert job["progress"] == 1 and [i["seed"] for i in job["images"]] == [3, 4]
    for item in job["images"]:
        assert item["url"] == f"http://127.0.0.1:9/images/{item['name']}.png"
        png = requests.get(f"{base}/images/{item['name']}.png", timeout=30)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert requests.delete(job_url, timeout=30).status_code == 409

    samples = metric_samples(base)
    assert samples[("imagine_jobs_total", (("outcome", "done"), ("platform", "web")))] == 2
    assert samples[("imagine_jobs_total", (("outcome", "done"), ("platform", "api")))] == 1
    assert samples[("imagine_generation_seconds_count", ())] == 3
    assert samples[("imagine_generation_seconds_bucket", (("le", "+Inf"),))] == 3
    assert samples[("imagine_cache_total", (("result", "hit"),))] >= 4
    assert samples[("imagine_cache_total", (("result", "miss"),))] >= 2
    assert samples[("imagine_queue_depth", ())] == 0

    # An image removed from storage is drawn again, from the same seed: the same bytes.
    Storage(settings.images_dir).path(image.headers["X-Imagine-Image"]).unlink()
    assert requests.get(url, timeout=30).headers["Cache-Control"] == "no-store"
    redrawn = wait_for(drawn, TIMEOUT, interval=0.3, message="the image drawn again")
    assert redrawn.headers["ETag"] == etag and redrawn.content == image.content
