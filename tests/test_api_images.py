"""The REST API with images: an image prompt and an inpaint with a mask drawn by a real
worker, a zoom out of the result, and the actions contract (0-based index, factor only for
zoom_out, direction for pan, 400/404/409)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import requests
from PIL import Image

from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus, JobStore, Requester
from tasks.core.storage import Storage
from tests.fixtures_redis import Process, wait_for

TIMEOUT = 120.0


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def finished(base: str, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=30).json()
        return job if job["status"] in ("done", "failed", "cancelled") else None

    job = wait_for(done, TIMEOUT, interval=0.2, message=f"job {job_id} to finish")
    assert job["status"] == "done", job["error"]
    return job


def test_image_prompt_inpaint_and_zoom_out_drawn_by_a_worker(
        serve_app: Callable[..., str], start_worker: Callable[..., Process],
        settings: Settings) -> None:
    base = serve_app(max_jobs_per_user=100)
    start_worker("generate")
    jobs = JobStore(redis_client(settings), settings.job_ttl)
    photo = Image.new("RGBA", (64, 48), (200, 40, 40, 255))
    photo.paste((0, 0, 0, 0), (0, 0, 8, 48))  # a transparent strip: filled with white, said

    made = requests.post(f"{base}/api/v1/jobs", json={
        "prompt": "a red square", "image": data_url(photo), "strength": 0.5, "steps": 2,
        "seed": 4}, timeout=30)
    assert made.status_code == 202, made.text
    assert made.json()["notes"] == ["The image has transparent areas: they were filled with "
                                    "white."]
    request = jobs.get(made.json()["id"]).request
    assert (request.mode, request.width, request.height, request.strength) == (
        "img2img", 64, 48, 0.5)
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (32, 0, 64, 48))
    inpaint = requests.post(f"{base}/api/v1/jobs", json={
        "prompt": "a blue circle", "image": data_url(photo), "mask": data_url(mask),
        "steps": 2}, timeout=30)
    assert inpaint.status_code == 202, inpaint.text
    redraw = jobs.get(inpaint.json()["id"]).request
    assert (redraw.mode, redraw.source_image, redraw.width) == ("inpaint", request.source_image,
                                                                64)
    mask_png = Storage(settings.images_dir).read(str(redraw.mask_image))
    assert Image.open(io.BytesIO(mask_png)).getpixel((40, 10)) == 255

    job = finished(base, made.json()["id"])
    assert [(i["width"], i["height"], i["seed"]) for i in job["images"]] == [(64, 48, 4)]
    assert finished(base, inpaint.json()["id"])["images"][0]["width"] == 64

    zoom = requests.post(f"{base}/api/v1/jobs/{job['id']}/actions",
                         json={"action": "zoom_out", "factor": 1.5}, timeout=30)
    assert zoom.status_code == 202, zoom.text
    zoomed = finished(base, zoom.json()["id"])
    assert [(i["width"], i["height"]) for i in zoomed["images"]] == [(96, 72)]


def _done_job(settings: Settings, images: int = 2) -> Job:
    storage = Storage(settings.images_dir)
    names = [storage.put(base64.b64decode(data_url(Image.new("RGB", (64, 48), c))[22:]))
             for c in ("red", "blue")[:images]]
    job = Job(requester=Requester(platform="api", user="tester"), status=JobStatus.done,
              request=ImageRequest(prompt="a fox", width=64, height=48, seed=1),
              images=names, seeds=[1, 2][:images], image_sizes=[(64, 48)] * images)
    return JobStore(redis_client(settings), settings.job_ttl).save(job)


def test_the_actions_contract(serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(max_jobs_per_user=100)
    jobs = JobStore(redis_client(settings), settings.job_ttl)
    parent = _done_job(settings)
    url = f"{base}/api/v1/jobs/{parent.id}/actions"

    def post(body: dict[str, Any], target: str = url) -> requests.Response:
        return requests.post(target, json=body, timeout=30)

    first = jobs.get(post({"action": "upscale"}).json()["id"]).request  # index 0 by default
    assert (first.source_image, first.seed) == (parent.images[0], 1)
    panned = post({"action": "pan", "index": 1, "direction": "left"})
    assert panned.status_code == 202, panned.text
    pan = jobs.get(panned.json()["id"]).request
    assert (pan.source_image, pan.direction, pan.width, pan.height) == (
        parent.images[1], "left", 96, 48)
    zoom = jobs.get(post({"action": "zoom_out"}).json()["id"]).request
    assert (zoom.factor, zoom.width, zoom.height) == (2.0, 128, 96)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"action": "upscale", "index": 2}, "pick 0 to 1 (the buttons show 1 to 2)"),
        ({"action": "upscale", "index": -1}, "index"),
        ({"action": "upscale", "factor": 2}, "factor applies to zoom_out only"),
        ({"action": "zoom_out", "factor": 3}, "factor must be 1.5 or 2 for zoom_out"),
        ({"action": "zoom_out", "direction": "up"}, "direction applies to pan only"),
        ({"action": "pan"}, "pan needs a direction: left, right, up or down (none given)"),
        ({"action": "pan", "direction": "north"}, "not 'north'"),
        ({"action": "vary_region"}, "action must be one of reroll, vary_subtle"),
    ]
    for body, words in cases:
        answer = post(body)
        assert answer.status_code == 400 and words in answer.json()["error"], (body, answer.text)
    assert post({"action": "reroll"}, f"{base}/api/v1/jobs/{'ab' * 12}/actions"
                ).status_code == 404
    waiting = jobs.save(Job(requester=Requester(platform="api", user="tester"),
                            request=ImageRequest(prompt="a fox")))
    answer = post({"action": "zoom_out"}, f"{base}/api/v1/jobs/{waiting.id}/actions")
    assert answer.status_code == 409 and "still queued" in answer.json()["error"]

    view = requests.get(f"{base}/api/v1/jobs/{parent.id}", timeout=30).json()
    assert [(i["width"], i["height"], i["seed"]) for i in view["images"]] == [(64, 48, 1),
                                                                               (64, 48, 2)]
    assert view["notes"] == []


def test_bad_images_and_masks_are_refused_with_their_reason(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(max_jobs_per_user=100)
    square = data_url(Image.new("RGB", (64, 64), "red"))
    for body, words in [
        ({"prompt": "a fox", "mask": square}, "mask needs image"),
        ({"prompt": "a fox --strength 0.4"}, "--strength only applies to an image prompt"),
        ({"prompt": "a fox", "image": "data:image/png;base64,aGVsbG8="},
         "not an image Pillow can read here"),
        ({"prompt": "a fox", "image": "http://127.0.0.1:9/cat.png"},
         "only public addresses are allowed"),
        ({"prompt": "a fox", "image": square,
          "mask": data_url(Image.new("L", (32, 32), 255))},
         "The mask is 32×32 but the image is 64×64: paint the mask on the same image."),
        ({"prompt": "a fox", "image": square, "mask": data_url(Image.new("L", (64, 64), 0))},
         "nothing to redraw"),
        ({"prompt": f"{square} {square} two foxes"}, "Give one image"),
    ]:
        answer = requests.post(f"{base}/api/v1/jobs", json=body, timeout=30)
        assert answer.status_code == 400 and words in answer.json()["error"], (words,
                                                                               answer.text)
    # An image URL first in the prompt, as in chat.
    answer = requests.post(f"{base}/api/v1/jobs", json={"prompt": f"{square} a fox --iw 2"},
                           timeout=30)
    assert answer.status_code == 202, answer.text
    request = JobStore(redis_client(settings), settings.job_ttl).get(answer.json()["id"]).request
    assert (request.mode, request.prompt, request.strength) == ("img2img", "a fox", 0.36)
