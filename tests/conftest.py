"""Shared fixtures, registered once: real Redis servers, settings, worker processes, the tiny
model, a live web app, and the fake chat services."""

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures_model",
    "tests.fixtures_controlnet",
    "tests.fixtures_lora",
    "tests.fixtures_upscaler",
    "tests.fixtures_redis",
    "tests.fixtures_s3",
    "tests.fixtures_chat",
    "tests.web_support",
    "tests.fixtures_browser",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read from nothing but what the test sets: no IMAGINE_/SLACK_/DISCORD_
    variables of the machine, and no stray .env in the working folder."""
    for key in list(os.environ):
        if key.startswith(("IMAGINE_", "SLACK_", "DISCORD_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
