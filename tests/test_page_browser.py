"""The prompt-URL builder page at `/` in a real headless Chromium, against the real web app
and a real generate worker on the tiny model: keyboard only, a prompt typed, the image
appears, and the copied Markdown URL gives the same image bytes; with IMAGINE_URL_SECRET the
page asks for the API token once and the URL it makes is signed (and works). Also: JSON
clients keep the 400 at `/`, the gallery lists what prompt URLs made and is a 404 when off,
and POST /api/v1/sign refuses when a secret has no token to guard it."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server

from bots.web.app import create_app
from bots.web.page_gallery import Gallery, GalleryItem
from generator.tiny_model import TAESD_FOLDER
from settings import Settings
from tasks.core.connection import redis_client
from tasks.local.embedded_redis import free_port
from tests.fixtures_browser import page_problems
from tests.fixtures_redis import Process, wait_for
from tests.web_support import with_settings

TIMEOUT = 60.0
TOKEN = "page-test-token"
SECRET = "page-test-secret"
# Every image the page shows in #image, in order (previews, then the result).
SHOWN_SOURCES = """
window.shownSources = [];
new MutationObserver(() => window.shownSources.push(document.getElementById("image").dataset.shows))
    .observe(document.getElementById("image"), {attributes: true, attributeFilter: ["src"]});
"""
MARKDOWN = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<url>[^)\s]+)\)$")


@pytest.fixture
def serve(settings: Settings) -> Iterator[Callable[..., str]]:
    """`serve(**overrides)`: the app on a port known in advance, so IMAGINE_PUBLIC_URL (the
    URLs the page shows and the image policy) names the server itself."""
    servers: list[BaseWSGIServer] = []

    def start(**overrides: Any) -> str:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        app = create_app(with_settings(settings, public_url=base, **overrides))
        server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, name="page-web", daemon=True).start()
        servers.append(server)
        return base

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def element(driver: Any, id_: str) -> Any:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    return driver.find_element(By.ID, id_)


def keys(driver: Any, *sequence: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains  # noqa: PLC0415

    ActionChains(driver).send_keys(*sequence).perform()


def tab_to(driver: Any, id_: str, most: int = 8, back: bool = False) -> list[str]:
    """Press Tab (Shift+Tab when `back`) until `id_` has the focus; the ids passed on the
    way (keyboard order)."""
    from selenium.webdriver.common.keys import Keys  # noqa: PLC0415

    seen = []
    for _ in range(most):
        if back:
            from selenium.webdriver.common.action_chains import ActionChains  # noqa: PLC0415

            ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(
                Keys.SHIFT).perform()
        else:
            keys(driver, Keys.TAB)
        seen.append(driver.execute_script("return document.activeElement.id"))
        if seen[-1] == id_:
            return seen
    raise AssertionError(f"Tab never reached #{id_}: {seen}")


def shared(driver: Any) -> str:
    """Wait for the result; the URL inside the Markdown snippet the page offers to copy."""
    def ready() -> str | None:
        status = element(driver, "status").text
        assert "could not" not in status and "refused" not in status, status
        return status if status.startswith("Done") else None

    wait_for(ready, TIMEOUT, interval=0.1, message="the page to show its result")
    markdown = element(driver, "markdown").get_attribute("value")
    match = MARKDOWN.match(markdown)
    assert match, markdown
    return match["url"]


def final_image(url: str) -> bytes:
    """The prompt URL's image once drawn (a placeholder is marked no-store)."""
    def drawn() -> bytes | None:
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, response.text
        return response.content if response.headers["Cache-Control"] != "no-store" else None

    return wait_for(drawn, TIMEOUT, interval=0.2, message=f"{url} to give its image")


def test_keyboard_only_prompt_to_image_and_the_markdown_url_gives_the_same_bytes(
        chromium: Any, serve: Callable[..., str], start_worker: Callable[..., Process],
        settings: Settings) -> None:
    from selenium.webdriver.common.keys import Keys  # noqa: PLC0415

    base = serve(gallery=True)
    off = serve()
    start_worker("generate")
    # Scripts keep today's answer; a browser gets the page; no gallery when it is off.
    assert requests.get(f"{base}/", headers={"Accept": "application/json"},
                        timeout=10).status_code == 400
    assert requests.get(f"{base}/", headers={"Accept": "*/*"}, timeout=10).status_code == 400
    page = requests.get(f"{base}/", headers={"Accept": "text/html,*/*;q=0.8"}, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script>" not in page.text and SECRET not in page.text
    assert requests.get(f"{off}/gallery", timeout=10).status_code == 404
    document = requests.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    assert "text/html" in document["paths"]["/"]["get"]["responses"]["200"]["content"]
    assert "/api/v1/sign" in document["paths"]

    chromium.get(f"{base}/")
    assert tab_to(chromium, "prompt")[-1] == "prompt"
    outline = chromium.execute_script(
        "return getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # focus is visible
    keys(chromium, "a lighthouse at dusk")
    assert tab_to(chromium, "ar") == ["ar"]
    keys(chromium, "1")  # a select takes typed text: the first ratio starting with 1 (1:1)
    assert tab_to(chromium, "steps") == ["steps"]
    keys(chromium, "3")
    assert tab_to(chromium, "negative") == ["seed", "model", "negative"]
    keys(chromium, "fog")
    assert tab_to(chromium, "prompt", back=True) == ["model", "seed", "steps", "ar", "prompt"]
    keys(chromium, Keys.ENTER)  # Enter in the prompt box generates

    url = shared(chromium)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{base}/?") and "sig" not in query
    assert re.fullmatch(r"a lighthouse at dusk --ar 1:1 --steps 3 --seed \d+ --no fog",
                        query["prompt"][0]), query
    shown = element(chromium, "image").get_attribute("src")
    assert shown.startswith(f"{base}/images/")
    assert final_image(url) == requests.get(shown, timeout=10).content
    assert element(chromium, "image").get_attribute("alt") == "a lighthouse at dusk"
    html = element(chromium, "html").get_attribute("value")
    assert html == f'<img src="{url.replace("&", "&amp;")}" alt="a lighthouse at dusk">'
    element(chromium, "share").find_element("css selector", "[data-copy=markdown]").click()
    assert element(chromium, "status").text == "Copied the Markdown."
    assert page_problems(chromium) == []

    # The prompt URL that made that image is in the gallery, linking back to it.
    gallery = requests.get(f"{base}/gallery", timeout=10)
    assert gallery.status_code == 200 and shown in gallery.text
    assert 'alt="a lighthouse at dusk"' in gallery.text


def test_with_a_secret_the_page_asks_for_the_token_and_makes_signed_urls(
        chromium: Any, serve: Callable[..., str], start_worker: Callable[..., Process],
        tiny_model_dir: Path) -> None:
    from selenium.webdriver.common.keys import Keys  # noqa: PLC0415

    unguarded = serve(url_secret=SECRET)
    base = serve(url_secret=SECRET, api_token=TOKEN)
    # Previews often enough, and a job long enough, for the page's polls to see some.
    start_worker("generate", env={
        "IMAGINE_PREVIEW_INTERVAL": "0.05",
        "IMAGINE_PREVIEW_DECODER": f"sd15={tiny_model_dir / TAESD_FOLDER}"})
    # A secret without a token: nobody may sign through the API, and the page says so.
    refused = requests.post(f"{unguarded}/api/v1/sign", json={"prompt": "a cat"}, timeout=10)
    assert refused.status_code == 403 and "Signing is off" in refused.json()["error"]
    chromium.get(f"{unguarded}/")
    assert "Signing is off" in element(chromium, "signing-off").text
    assert requests.post(f"{base}/api/v1/sign", json={"prompt": "a cat"},
                         timeout=10).status_code == 401

    chromium.get(f"{base}/")
    assert element(chromium, "token-form").is_displayed()
    assert chromium.execute_script("return document.activeElement.id") == "token"
    keys(chromium, TOKEN, Keys.ENTER)
    wait_for(lambda: not element(chromium, "token-form").is_displayed(), 10,
             message="the token form to close")
    chromium.refresh()  # kept in the browser: not asked again
    assert not element(chromium, "token-form").is_displayed()
    chromium.execute_script(SHOWN_SOURCES)
    element(chromium, "prompt").send_keys("a paper boat --size 128x128")  # flags inline work
    element(chromium, "seed").send_keys("1234")
    element(chromium, "steps").send_keys("50")
    element(chromium, "generate").click()

    url = shared(chromium)
    query = parse_qs(urlsplit(url).query)
    assert query["prompt"] == ["a paper boat --size 128x128 --steps 50 --seed 1234"]
    assert len(query["sig"][0]) == 32
    sources = chromium.execute_script("return window.shownSources")
    assert any("/preview.jpg?v=" in src for src in sources[:-1]), sources  # previews first
    shown = element(chromium, "image").get_attribute("src")
    assert final_image(url) == requests.get(shown, timeout=10).content
    unsigned = requests.get(f"{base}/", params={"prompt": query["prompt"][0]}, timeout=10)
    assert unsigned.status_code == 403
    assert TOKEN not in requests.get(f"{base}/", headers={"Accept": "text/html"},
                                     timeout=10).text
    assert page_problems(chromium) == []


def test_sign_route_and_the_gallery_list(serve_app: Callable[..., str], settings: Settings) -> None:
    """No browser: the signing route without a secret (an unsigned URL, that works), a bad
    prompt, and the gallery list's order, de-duplication and cap."""
    base = serve_app()
    made = requests.post(f"{base}/api/v1/sign", json={"prompt": "a fox --seed 7"}, timeout=10)
    assert made.status_code == 200 and made.json() == {
        "url": "http://127.0.0.1:9/?prompt=a+fox+--seed+7", "signed": False}
    bad = requests.post(f"{base}/api/v1/sign", json={"prompt": "a fox --steps many"}, timeout=10)
    assert bad.status_code == 400 and "steps" in bad.json()["error"]
    extra = requests.post(f"{base}/api/v1/sign", json={"prompt": "a", "sig": "x"}, timeout=10)
    assert extra.status_code == 400

    gallery = Gallery(redis_client(settings), size=3)
    for name in ("a", "b", "c", "d", "b"):
        gallery.record(GalleryItem(image=name, url=f"{base}/?prompt={name}", prompt=name))
    assert [item.image for item in gallery.recent()] == ["b", "d", "c"]
