"""Tiny ControlNets for the tiny model, and a tiny depth annotator, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["tiny_controlnets", "tiny_depth_estimator"]


@pytest.fixture(scope="session")
def tiny_controlnets(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kind → diffusers ControlNet folder ({"canny": …, "depth": …}) fitting `tiny_model_dir`."""
    from generator.tiny_controlnet import build_tiny_controlnets

    return build_tiny_controlnets(tmp_path_factory.mktemp("controlnets"), tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_depth_estimator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transformers depth-estimation folder for IMAGINE_ANNOTATORS={"depth": …}."""
    from generator.tiny_controlnet import build_tiny_depth_estimator

    return build_tiny_depth_estimator(tmp_path_factory.mktemp("annotators") / "depth")
