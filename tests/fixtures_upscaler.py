"""The tiny super-resolution model (random weights, real key layout), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["tiny_upscaler"]


@pytest.fixture(scope="session")
def tiny_upscaler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2× RealESRGAN-compact `.safetensors` file that spandrel loads (IMAGINE_UPSCALER)."""
    from generator.tiny_upscaler import UPSCALER_FILE_NAME, build_tiny_upscaler

    return build_tiny_upscaler(tmp_path_factory.mktemp("upscaler") / UPSCALER_FILE_NAME)
