"""Small pieces the image tests share: plain PNGs to send, and Settings read from the
environment a test gives its processes."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from settings import Settings


def solid_png(color: str = "teal", size: tuple[int, int] = (64, 64)) -> bytes:
    """A PNG of one colour, without generation parameters."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def settings_from_env(env: dict[str, str]) -> Settings:
    """The Settings the test's processes get from `env`, ignoring this process's own."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith(("IMAGINE_", "SLACK_", "DISCORD_")):
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings(_env_file=None)  # type: ignore[call-arg]
