"""A real headless browser for page tests: Debian's chromium driven by selenium, which is
given both paths so it never downloads anything (tests/run.sh installs them as root).

Skips, saying why, only where the binaries are absent (run.sh could not install them) or
selenium is missing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["chromium", "page_problems"]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=390,844")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium the size of a phone, with a fresh profile; its console kept."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"no {CHROMIUM} and {CHROMEDRIVER}: install Debian's chromium and "
                    "chromium-driver (tests/run.sh does, as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    profile = tempfile.mkdtemp(prefix="page-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_problems(driver: Any, expected: tuple[str, ...] = ()) -> list[str]:
    """What the page logged as an error (a script error, a refused resource or policy),
    but for the favicon and messages containing one of `expected`."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
            and not any(text in entry["message"] for text in expected)]
