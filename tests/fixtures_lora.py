"""Tiny LoRAs and a tiny embedding for the tiny model, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["tiny_embeddings_dir", "tiny_lora_dir"]


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An IMAGINE_LORA_DIR: `tiny-style.safetensors` (UNet and text encoder layers, fits the
    tiny model) and `sdxl-style.safetensors` (made for a tiny SDXL UNet, fits no SD 1.x)."""
    from generator.tiny_adapters import build_tiny_loras

    directory = tmp_path_factory.mktemp("loras")
    build_tiny_loras(directory, tiny_model_dir)
    return directory


@pytest.fixture(scope="session")
def tiny_embeddings_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An IMAGINE_EMBEDDINGS_DIR with `tiny-token.safetensors` (A1111 layout, two vectors)."""
    from generator.tiny_adapters import build_tiny_embeddings

    directory = tmp_path_factory.mktemp("embeddings")
    build_tiny_embeddings(directory, tiny_model_dir)
    return directory
