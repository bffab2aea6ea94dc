"""The model cache on real tiny pipelines: least recently used evicted, CPU copies brought
back, a memory budget instead of a count, loads timed for /metrics.

The tiny model's folder and its single-file checkpoint are two "models". A CPU-only
machine has no second device, so the two-tier tests name the CPU `cpu:0`: a real device
that is not the string "cpu", which makes the cache keep evicted models in CPU memory as it
does for a GPU (moving between the two costs nothing here, the bookkeeping is the same).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generator.model_cache import GIB, LoadedModel, ModelCache, load_model, pipeline_bytes


@pytest.fixture(scope="module")
def sources(tiny_model_dir: Path, tiny_single_file: Path) -> dict[str, str]:
    return {"folder": str(tiny_model_dir), "single": str(tiny_single_file),
            "third": str(tiny_model_dir)}


def _loader(sources: dict[str, str], calls: list[str]):
    def load(name: str) -> LoadedModel:
        calls.append(name)
        return load_model(name, sources[name], None, torch.float32)

    return load


def test_one_model_on_cpu_evicts_by_dropping(sources: dict[str, str]) -> None:
    calls: list[str] = []
    said: list[str] = []
    cache = ModelCache(_loader(sources, calls), "cpu", max_loaded=1)
    first = cache.get("folder", said.append)
    assert first.family == "sd15" and first.label == "tiny"
    assert cache.get("folder", said.append) is first  # cached: nothing said, nothing loaded
    cache.get("single", said.append)
    assert cache.on_device == ("single",) and cache.on_cpu == ()
    assert first.text2image is None  # dropped, not kept anywhere
    cache.get("folder", said.append)
    assert said == ["loading model folder…", "loading model single…", "loading model folder…"]
    assert calls == ["folder", "single", "folder"]
    assert [(load.model, load.origin) for load in cache.take_loads()] == [
        ("folder", "disk"), ("single", "disk"), ("folder", "disk")]
    assert cache.take_loads() == []


def test_least_recently_used_goes_to_cpu_then_is_dropped(sources: dict[str, str]) -> None:
    calls: list[str] = []
    cache = ModelCache(_loader(sources, calls), "cpu:0", max_loaded=2)
    cache.get("folder")
    cache.get("single")
    cache.get("folder")  # now "single" is the least recently used
    cache.get("third")
    assert cache.on_device == ("folder", "third") and cache.on_cpu == ("single",)
    said: list[str] = []
    back = cache.get("single", said.append)  # from CPU memory, not from disk
    assert said == ["loading model single…"] and calls == ["folder", "single", "third"]
    assert back.text2image is not None
    assert cache.on_device == ("third", "single") and cache.on_cpu == ("folder",)
    loads = cache.take_loads()
    assert [(load.model, load.origin) for load in loads] == [
        ("folder", "disk"), ("single", "disk"), ("third", "disk"), ("single", "cpu")]
    assert all(load.seconds > 0 for load in loads)


def test_cpu_copies_beyond_the_limit_are_dropped(sources: dict[str, str]) -> None:
    cache = ModelCache(_loader(sources, []), "cpu:0", max_loaded=1)
    folder = cache.get("folder")
    cache.get("single")
    assert cache.on_cpu == ("folder",)
    cache.get("third")
    assert cache.on_device == ("third",) and cache.on_cpu == ("single",)
    assert folder.text2image is None


def test_memory_budget_instead_of_a_count(sources: dict[str, str]) -> None:
    size = load_model("folder", sources["folder"], "sd15", torch.float32).nbytes
    # Room for one and a half tiny models: a second one evicts the first.
    cache = ModelCache(_loader(sources, []), "cpu", max_loaded=8, memory_gb=1.5 * size / GIB)
    cache.get("folder")
    cache.get("single")
    assert cache.on_device == ("single",)
    roomy = ModelCache(_loader(sources, []), "cpu", max_loaded=1, memory_gb=2.5 * size / GIB)
    roomy.get("folder")
    roomy.get("single")
    assert roomy.on_device == ("folder", "single")


def test_pipeline_bytes_counts_every_weight(sources: dict[str, str]) -> None:
    model = load_model("folder", sources["folder"], "sdxl", torch.float32)
    assert model.family == "sdxl"  # the catalogue's word wins over detection
    unet = model.text2image.unet
    assert pipeline_bytes(model.text2image) > sum(p.numel() * 4 for p in unet.parameters())
    half = load_model("folder", sources["folder"], None, torch.float16)
    assert half.text2image.unet.dtype == torch.float16
    assert half.nbytes == pytest.approx(model.nbytes / 2, rel=0.01)


def test_a_model_over_the_budget_is_loaded_alone_and_logged(
        sources: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    cache = ModelCache(_loader(sources, []), "cpu", memory_gb=1 / 1024**2)  # one kilobyte
    with caplog.at_level("WARNING", logger="generator.model_cache"):
        cache.get("folder")
    assert cache.on_device == ("folder",)
    assert "larger than IMAGINE_MODEL_MEMORY_GB" in caplog.text
