"""Live previews over real HTTP: the preview route, the job JSON's preview_url, the prompt
URL's placeholder showing the preview; without a worker (a preview put with PreviewStore as
the worker's reporter does), then end to end with a real generate worker and the tiny TAESD."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy
import requests
from PIL import Image

from generator.tiny_model import TAESD_FOLDER
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import JobStatus, JobStore
from tasks.core.previews import PreviewStore, encode_preview
from tasks.core.queue import JobQueue
from tasks.worker.celery_app import create_celery
from tests.fixtures_redis import Process, wait_for

RED = (220, 30, 30)
PUBLIC = "http://127.0.0.1:9"  # IMAGINE_PUBLIC_URL of the test environment


def _red_pixels(png: bytes) -> int:
    rgb = numpy.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum())


def test_preview_route_job_json_and_placeholder(serve_app: Callable[..., str],
                                                settings: Settings) -> None:
    base = serve_app(embed_wait=0.0)
    url = f"{base}/?prompt=a+red+barn&steps=10"
    first = requests.get(url, timeout=30)
    job_id = first.headers["X-Imagine-Job"]
    assert first.headers["Cache-Control"] == "no-store" and _red_pixels(first.content) == 0
    job_url = f"{base}/api/v1/jobs/{job_id}"
    preview_url = f"{job_url}/preview.jpg"

    assert requests.get(job_url, timeout=30).json()["preview_url"] is None
    missing = requests.get(preview_url, timeout=30)
    assert missing.status_code == 404 and "no preview" in missing.json()["error"]
    unknown = requests.get(f"{base}/api/v1/jobs/{'0' * 32}/preview.jpg", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["status"] == 404

    # What the worker's reporter does on a preview: the JPEG, then the job's count.
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    assert [job.id for job in queue.claim("default", "test-drawer", job_id)] == [job_id]
    jpeg = encode_preview(Image.new("RGB", (256, 256), RED))
    PreviewStore(queue.redis, settings.job_timeout + 60).put(job_id, jpeg)
    queue.jobs.update(job_id, lambda j: j.model_copy(
        update={"step": 3, "total_steps": 10, "preview": j.preview + 1}))

    view = requests.get(job_url, timeout=30).json()
    assert view["status"] == "running"
    assert view["preview_url"] == f"{PUBLIC}/api/v1/jobs/{job_id}/preview.jpg?v=1"
    got = requests.get(preview_url, params={"v": 1}, timeout=30)
    assert got.status_code == 200 and got.content == jpeg
    assert got.headers["Content-Type"] == "image/jpeg"
    assert got.headers["Cache-Control"] == "no-store" and got.headers["X-Imagine-Preview"] == "1"

    placeholder = requests.get(url, timeout=30)
    assert placeholder.headers["X-Imagine-Job"] == job_id
    assert placeholder.headers["Content-Type"] == "image/png"
    assert placeholder.headers["Cache-Control"] == "no-store" and "ETag" not in placeholder.headers
    assert _red_pixels(placeholder.content) > 5000  # the preview, under "rendering…"
    as_json = requests.get(url, headers={"Accept": "application/json"}, timeout=30)
    assert as_json.status_code == 202 and as_json.headers["Cache-Control"] == "no-store"

    # Finished: the images are what to show; the preview is gone from the API.
    queue.jobs.update(job_id, lambda j: j.model_copy(update={"status": JobStatus.failed,
                                                             "error": "test"}))
    assert requests.get(job_url, timeout=30).json()["preview_url"] is None
    assert requests.get(preview_url, timeout=30).status_code == 404


def test_openapi_documents_previews(serve_app: Callable[..., str]) -> None:
    document = requests.get(f"{serve_app()}/api/v1/openapi.json", timeout=30).json()
    route = document["paths"]["/api/v1/jobs/{job_id}/preview.jpg"]["get"]
    assert "image/jpeg" in route["responses"]["200"]["content"]
    assert "404" in route["responses"]
    job = document["components"]["schemas"]["Job"]
    assert "preview_url" in job["required"] and "preview_url" in job["properties"]


def test_previews_from_a_real_worker_with_the_tiny_taesd(
        serve_app: Callable[..., str], start_worker: Callable[..., Process],
        tiny_model_dir: Path, settings: Settings) -> None:
    worker = start_worker("generate", env={
        "IMAGINE_PREVIEW_INTERVAL": "0.05",
        "IMAGINE_PREVIEW_DECODER": f"sd15={tiny_model_dir / TAESD_FOLDER}"})
    base = serve_app()
    created = requests.post(f"{base}/api/v1/jobs",
                            json={"prompt": "a slow red fox", "steps": 40, "size": "128"},
                            timeout=30)
    assert created.status_code == 202, created.text
    job_url = created.headers["Location"].replace(PUBLIC, base)
    seen: list[bytes] = []

    def previewed() -> dict[str, object] | None:
        job = requests.get(job_url, timeout=30).json()
        if job["preview_url"] and not seen:
            answer = requests.get(str(job["preview_url"]).replace(PUBLIC, base), timeout=30)
            if answer.status_code == 200:  # else finished meanwhile: the count still shows
                seen.append(answer.content)
        return job if job["status"] in ("done", "failed", "cancelled") else None

    job = wait_for(previewed, 120, interval=0.05, message="the job to finish")
    assert job["status"] == "done", job["error"]
    assert job["preview_url"] is None
    # The worker counted its previews on the record (the chat adapters compare that count).
    record = JobStore(redis_client(settings), settings.job_ttl).get(str(job["id"]))
    assert record.preview >= 1
    log = worker.log()
    assert "cannot load the TAESD" not in log and "decoding failed" not in log, log[-3000:]
    assert seen, "no preview was served while the job ran"
    image = Image.open(io.BytesIO(seen[0]))
    assert image.format == "JPEG" and max(image.size) <= 256
