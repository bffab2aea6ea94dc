"""Vary (Region) links without a browser: one-time grants in a real Redis, and the editor's
submit endpoint deciding what to queue (no worker: a queued job is all these need to see).

tests/test_region_page.py paints in a real browser and waits for the inpainted image.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image, ImageDraw

from bots.followups import JobNotReady
from bots.region import LinkExpired, LinkUsed, RegionLinks
from bots.web.app import create_app
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus, JobStore, Requester
from tasks.core.storage import Storage
from tasks.names import JOB_KEY, QUEUE_KEY, REGION_LINK_KEY
from tests.fixtures_redis import wait_for
from tests.web_support import with_settings

SIZE = (64, 48)
SLACK_USER = Requester(platform="slack", user="U1", channel="C1", thread="171.5",
                       extra={"team": "T1", "index": "1"})


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def mask_url(size: tuple[int, int] = SIZE) -> str:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((8, 8, 30, 30), fill=255)
    return data_url(png(mask))


def finished_job(settings: Settings, **changes: Any) -> Job:
    """A done job with one stored 64×48 image, as a worker would have left it."""
    name = Storage(settings.images_dir).put(png(Image.new("RGB", SIZE, (40, 90, 160))))
    job = Job(requester=Requester(platform="slack", user="U1", channel="C1"),
              request=ImageRequest(prompt="a red fox", negative_prompt="text", width=64,
                                   height=48, seed=7, num_inference_steps=2),
              status=JobStatus.done, images=[name], seeds=[7], image_sizes=[SIZE], **changes)
    return JobStore(redis_client(settings), settings.job_ttl).save(job)


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture
def links(settings: Settings) -> RegionLinks:
    return RegionLinks(redis_client(settings), settings)


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


def test_a_link_is_unguessable_kept_by_its_hash_and_redeemed_once(
        settings: Settings, links: RegionLinks) -> None:
    parent = finished_job(settings)
    url = links.issue(parent, 0, SLACK_USER)
    assert url.startswith(settings.public_url.rstrip("/") + "/region/")
    token = token_of(url)
    assert len(token) >= 32 and token != token_of(links.issue(parent, 0, SLACK_USER))
    client = redis_client(settings)
    keys = {key.decode() for key in client.scan_iter(REGION_LINK_KEY.format("*"))}
    assert len(keys) == 2 and not any(token in key for key in keys)
    assert all(0 < client.ttl(key) <= settings.region_link_seconds for key in keys)

    shown = links.find(token)
    assert (shown.job_id, shown.index, shown.requester) == (parent.id, 0, SLACK_USER)
    assert links.find(token) == shown  # showing the page does not use the link
    assert links.redeem(token) == shown
    with pytest.raises(LinkUsed, match="already used.*press Vary \\(Region\\) again"):
        links.redeem(token)
    with pytest.raises(LinkUsed):
        links.find(token)
    assert links.restore(token, shown)  # a submit the queue refused gives it back
    assert links.redeem(token).requester == SLACK_USER
    with pytest.raises(LinkExpired, match="expired \\(links last 15 minutes\\)"):
        links.find(token[:-1] + ("A" if token[-1] != "A" else "B"))


def test_links_expire_and_are_refused_for_images_that_cannot_be_varied(
        settings: Settings) -> None:
    short = RegionLinks(redis_client(settings), with_settings(settings, region_link_seconds=1))
    parent = finished_job(settings)
    token = token_of(short.issue(parent, 0, SLACK_USER))

    def expired() -> bool:
        try:
            short.find(token)
        except LinkExpired as exc:
            return "links last 1 second)" in exc.message
        return False

    wait_for(expired, timeout=5, message="the link to expire")
    with pytest.raises(JobNotReady, match="still queued"):
        short.issue(parent.model_copy(update={"status": JobStatus.queued}), 0, SLACK_USER)
    with pytest.raises(Exception, match="no image 1"):
        short.issue(parent, 1, SLACK_USER)


def test_the_page_shows_the_image_and_the_prompt_then_410_once_used(
        settings: Settings, links: RegionLinks, client: FlaskClient) -> None:
    parent = finished_job(settings)
    token = token_of(links.issue(parent, 0, SLACK_USER))
    page = client.get(f"/region/{token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert f"/images/{parent.images[0]}.png" in html and "a red fox --no text" in html
    assert 'width="64" height="48"' in html and "//" not in html.split("<main>")[1].replace(
        settings.public_url, "")  # nothing from another site: no CDN
    assert client.get("/region/static/region.js").status_code == 200

    answer = client.post(f"/region/{token}", json={"mask": mask_url(), "prompt": "a blue owl"})
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["message"].startswith("Queued: the new image will appear where you pressed")
    assert body["status_url"].endswith(f"/api/v1/jobs/{body['job']}")
    job = JobStore(redis_client(settings), settings.job_ttl).get(body["job"])
    assert (job.requester, job.parent, job.action) == (SLACK_USER, parent.id, "vary_region")
    request = job.request
    assert (request.mode, request.source_image, request.width, request.height) == (
        "inpaint", parent.images[0], 64, 48)
    # Drawn anew, as the other variations are: a new seed, not the parent's 7.
    assert (request.prompt, request.negative_prompt) == ("a blue owl", "")
    assert request.seed is not None
    stored = Image.open(io.BytesIO(Storage(settings.images_dir).read(request.mask_image or "")))
    assert stored.size == SIZE and stored.getpixel((10, 10)) == 255
    assert stored.getpixel((50, 40)) == 0

    again = client.post(f"/region/{token}", json={"mask": mask_url(), "prompt": "a blue owl"})
    assert again.status_code == 410 and "already used" in again.get_json()["error"]
    gone = client.get(f"/region/{token}")
    assert gone.status_code == 410 and "already used" in gone.get_data(as_text=True)
    unknown = client.get("/region/not-a-token")
    assert unknown.status_code == 410 and "has expired" in unknown.get_data(as_text=True)


@pytest.mark.parametrize(("body", "message"), [
    ({"mask": mask_url((48, 48)), "prompt": "a fox"}, "48×48|48x48"),
    ({"mask": data_url(b"not an image at all"), "prompt": "a fox"}, "image"),
    ({"mask": "https://example.com/mask.png", "prompt": "a fox"}, "data URL of a PNG"),
    ({"mask": mask_url(), "prompt": "   "}, "The prompt is empty"),
    ({"mask": mask_url(), "prompt": "a fox " * 200}, "too long"),
    ({"mask": mask_url(), "prompt": "a fox --ar 16:9"}, "Only the prompt's words and --no"),
    ({"mask": mask_url(), "prompt": "a fox --wat"}, "Unknown flag"),
    ({"mask": mask_url()}, "prompt: Field required"),
])
def test_a_bad_submit_is_a_400_with_its_line_and_keeps_the_link(
        settings: Settings, links: RegionLinks, client: FlaskClient,
        body: dict[str, str], message: str) -> None:
    token = token_of(links.issue(finished_job(settings), 0, SLACK_USER))
    answer = client.post(f"/region/{token}", json=body)
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert "\n" not in error and re.search(message, error), error
    assert links.find(token).requester == SLACK_USER  # still usable: fix it and resend


def test_a_full_queue_says_so_and_the_link_still_works(settings: Settings) -> None:
    full = with_settings(settings, max_queue=1)
    links = RegionLinks(redis_client(full), full)
    token = token_of(links.issue(finished_job(full), 0, SLACK_USER))
    client = redis_client(full)
    client.zadd(QUEUE_KEY, {"someone-else": 1})  # one waiting job fills a queue of one
    answer = create_app(full).test_client().post(
        f"/region/{token}", json={"mask": mask_url(), "prompt": "a fox"})
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
    assert "queue is full" in answer.get_json()["error"]
    assert "link still works" in answer.get_json()["error"]
    assert links.find(token).requester == SLACK_USER
    assert not [key for key in client.scan_iter(JOB_KEY.format("*"))
                if key.decode() != JOB_KEY.format(links.find(token).job_id)]
