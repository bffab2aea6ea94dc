"""The tiny diffusers model, built once per test session with real configs and random weights."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# No test may reach a model hub; set before diffusers/huggingface_hub read it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__all__ = ["one_torch_thread", "tiny_model_dir", "tiny_single_file"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers folder (model_index.json, unet/, vae/, …) named `tiny`."""
    from generator.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def tiny_single_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights as `tiny_model_dir` as one LDM-layout checkpoint plus `tiny.config/`."""
    from diffusers import StableDiffusionPipeline

    from generator.tiny_model import save_single_file

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    return save_single_file(pipe, tmp_path_factory.mktemp("single") / "tiny.safetensors")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Image bytes depend on torch's thread count (byte-equality tests fix it); one thread is
    also fastest on a busy CPU. The count is put back for later tests in this process."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
