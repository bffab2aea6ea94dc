"""The Vary (Region) editor in a real headless Chromium, against the real web app and a real
generate worker on the tiny model: paint a stroke, edit the prompt, submit, and the
inpainted image comes through the queue; a used or expired link is refused.

Debian's chromium and chromedriver are driven by selenium, which is given both paths so it
never downloads anything (tests/run.sh installs them when missing and root).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server

from bots.region import LinkExpired, RegionLinks
from bots.web.app import create_app
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import JobStore, Requester
from tasks.core.storage import Storage
from tasks.local.embedded_redis import free_port
from tests.fixtures_redis import Process, wait_for
from tests.web_support import with_settings

TIMEOUT = 120.0
SIZE = 64


@pytest.fixture(scope="module")
def browser(chromium: Any) -> Any:
    """The shared headless Chromium (tests/fixtures_browser.py)."""
    return chromium


@pytest.fixture
def web(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """The web app on a port known in advance, so IMAGINE_PUBLIC_URL (image URLs, links,
    the page's image policy) names the server itself."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    served = with_settings(settings, public_url=base)
    server = make_server("127.0.0.1", port, create_app(served), threaded=True)
    threading.Thread(target=server.serve_forever, name="region-web", daemon=True).start()
    yield base, served
    server.shutdown()
    server.server_close()


def finished(base: str, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        view: dict[str, Any] = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()
        assert view["status"] in ("queued", "running", "done"), view
        return view if view["status"] == "done" else None

    return wait_for(done, TIMEOUT, interval=0.2, message=f"job {job_id} to finish")


def gone(links: RegionLinks, token: str) -> bool:
    try:
        links.find(token)
    except LinkExpired:
        return True
    return False


def problems(driver: Any) -> list[str]:
    """What the page logged as an error: a script error, a resource or a policy refused
    (the 410 of a used or expired link's own page is expected)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
            and "status of 410" not in entry["message"]]


def paint_and_submit(driver: Any, url: str, prompt: str) -> str:
    """Open the editor and use every tool, leaving the middle row (x 16 to 48) painted but
    for an erased dot at its centre; set the prompt, submit; the status line it ends with."""
    from selenium.webdriver.common.action_chains import ActionChains  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    driver.get(url)
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('source'); return i.complete && i.naturalWidth"))
    canvas = driver.find_element(By.ID, "mask")
    shown = canvas.size["width"]
    assert shown > SIZE * 2, "the canvas is scaled to the screen, not shown at 64 px"
    scale = shown / SIZE

    def at(x: int, y: int) -> ActionChains:  # image pixels → offsets from the centre
        return ActionChains(driver).move_to_element_with_offset(
            canvas, round((x - SIZE / 2) * scale), round((y - SIZE / 2) * scale))

    def stroke(y: int) -> None:
        at(16, y).click_and_hold().move_by_offset(round(16 * scale), 0) \
            .move_by_offset(round(16 * scale), 0).release().perform()

    def press(name: str) -> None:
        driver.find_element(By.ID, name).click()

    stroke(SIZE // 2)
    stroke(10)
    press("undo")  # the second stroke is gone
    press("clear")
    press("undo")  # the first one is back
    press("eraser")
    at(SIZE // 2, SIZE // 2).click().perform()  # a tap erases a dot
    press("brush")
    box = driver.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(prompt)
    press("submit")
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("Queued", "The ")))
    return str(driver.find_element(By.ID, "status").text)


def test_paint_a_region_in_the_browser_and_the_inpainted_image_arrives(
        browser: Any, web: tuple[str, Settings], start_worker: Callable[..., Process]) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    base, settings = web
    start_worker("generate")
    made = requests.post(f"{base}/api/v1/jobs", timeout=10,
                         json={"prompt": f"a red fox --size {SIZE}x{SIZE} --steps 1"})
    assert made.status_code == 202, made.text
    parent = finished(base, made.json()["id"])
    links = RegionLinks(redis_client(settings), settings)
    jobs = JobStore(redis_client(settings), settings.job_ttl)
    requester = Requester(platform="api", user="127.0.0.1")
    url = links.issue(jobs.get(parent["id"]), 0, requester)

    line = paint_and_submit(browser, url, "a blue owl --no fur")
    assert line.startswith("Queued: the new image will appear where you pressed the button"), line
    job_id = browser.find_element(By.ID, "job-link").get_attribute("href").rsplit("/", 1)[1]
    assert problems(browser) == []
    view = finished(base, job_id)
    job = jobs.get(job_id)
    assert (job.parent, job.action, job.requester) == (parent["id"], "vary_region", requester)
    assert (job.request.mode, job.request.prompt, job.request.negative_prompt) == (
        "inpaint", "a blue owl", "fur")
    result = Image.open(io.BytesIO(requests.get(view["images"][0]["url"], timeout=10).content))
    assert result.size == (SIZE, SIZE)
    # The mask has the image's size: white along the painted middle row, black elsewhere.
    mask = Image.open(io.BytesIO(Storage(settings.images_dir).read(job.request.mask_image or "")))
    assert mask.size == (SIZE, SIZE)
    assert [mask.getpixel((x, SIZE // 2)) for x in (20, 26, 38, 44)] == [255] * 4
    assert [mask.getpixel(xy) for xy in ((32, 32), (32, 10), (2, 2), (61, 61))] == [0] * 4

    # The same link again: the page says it was used, and a resubmit is refused.
    browser.get(url)
    assert "already used" in browser.find_element(By.ID, "gone").text
    again = requests.post(url, timeout=10, json={"mask": "data:image/png;base64,", "prompt": "x"})
    assert again.status_code == 410 and "already used" in again.json()["error"]

    # A link past its lifetime.
    brief = RegionLinks(redis_client(settings), with_settings(settings, region_link_seconds=1))
    stale = brief.issue(jobs.get(parent["id"]), 0, requester)
    wait_for(lambda: gone(brief, stale.rsplit("/", 1)[1]), 5, message="the link to expire")
    browser.get(stale)
    assert "has expired" in browser.find_element(By.ID, "gone").text
    assert problems(browser) == []
