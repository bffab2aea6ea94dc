"""The GPU speed options on the CPU with the tiny model: images stay valid, options a pipeline
lacks are skipped with a log line, the start-up line names every option."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generator import speedups
from generator.speedups import SpeedOptions
from tests.fixtures_redis import Process, wait_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pipe(tiny_model_dir: Path) -> Any:
    from generator.loading import load_pipeline

    return load_pipeline(str(tiny_model_dir), "cpu", "float32")


def _draw(pipe: Any) -> np.ndarray:
    import torch

    image = pipe(prompt="a red fox", width=64, height=64, num_inference_steps=2,
                 generator=torch.Generator("cpu").manual_seed(7), output_type="np").images[0]
    return np.asarray(image)


@pytest.fixture(scope="module")
def plain(tiny_model_dir: Path) -> np.ndarray:
    return _draw(_pipe(tiny_model_dir))


def test_defaults_are_all_off() -> None:
    from settings import Settings

    options = SpeedOptions.from_settings(Settings())
    assert not options.any
    assert options.warm_size == Settings().default_size


def test_channels_last_fused_qkv_and_vae_tiling_leave_images_close(
    tiny_model_dir: Path, plain: np.ndarray
) -> None:
    pipe = _pipe(tiny_model_dir)
    options = SpeedOptions(channels_last=True, fuse_qkv=True, vae_tiling=True)
    assert speedups.apply(pipe, options) == ["channels_last", "fuse_qkv", "vae_tiling"]
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    image = _draw(pipe)
    # Not byte-equal: fused projections and another memory layout sum in another order.
    assert image.shape == plain.shape and np.isfinite(image).all()
    assert np.abs(image - plain).max() < 1e-3


def test_vae_tiling_below_the_tile_size_is_byte_equal(
    tiny_model_dir: Path, plain: np.ndarray
) -> None:
    pipe = _pipe(tiny_model_dir)
    assert speedups.apply(pipe, SpeedOptions(vae_tiling=True)) == ["vae_tiling"]
    # 64 px is under the VAE's 512 px tile: diffusers decodes it whole, as without tiling.
    assert np.array_equal(_draw(pipe), plain)


def test_compile_then_warm_up_compiles_before_the_first_job(
    tiny_model_dir: Path, plain: np.ndarray
) -> None:
    pipe = _pipe(tiny_model_dir)
    # Inductor's code generation takes 77 s for the tiny UNet on this CPU: the test covers
    # the wiring (dynamo captures UNet and decoder in the warm-up) with the eager backend.
    options = SpeedOptions(compile=True, warm_size=64, warm_steps=1, compile_backend="eager")
    assert speedups.apply(pipe, options) == ["compile"]
    assert speedups.warm_up(pipe, options) > 0.0
    began = time.perf_counter()
    image = _draw(pipe)
    after_warm_up = time.perf_counter() - began
    assert np.abs(image - plain).max() < 1e-3
    assert pipe.unet._compiled_call_impl is not None
    assert pipe.vae.decoder._compiled_call_impl is not None
    assert after_warm_up < 10.0, f"the first draw after warm-up took {after_warm_up:.1f} s"


def test_warm_up_does_nothing_without_compile(tiny_model_dir: Path) -> None:
    assert speedups.warm_up(object(), SpeedOptions(channels_last=True)) == 0.0


def test_an_option_the_pipeline_lacks_is_skipped_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class NoModules:
        """A pipeline-like object without UNet, VAE or fusing: every option is skipped."""

    with caplog.at_level(logging.INFO, logger="generator.speedups"):
        applied = speedups.apply(NoModules(), SpeedOptions(compile=True, channels_last=True,
                                                           fuse_qkv=True, vae_tiling=True))
    assert applied == []
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 4
    assert any("fuse_qkv skipped for NoModules" in line for line in skipped)


def test_the_start_up_line_lists_every_option_and_the_attention(tiny_model_dir: Path) -> None:
    pipe = _pipe(tiny_model_dir)
    assert speedups.attention_kind(pipe) == "sdpa"
    line = speedups.describe(SpeedOptions(channels_last=True), "cpu", pipe)
    assert line == ("speed options on cpu: compile=off channels_last=on fuse_qkv=off "
                    "vae_tiling=off attention=sdpa (all off unless set: unmeasured on a GPU here)")


def test_the_engine_applies_the_options_at_load(tiny_model_dir: Path) -> None:
    from generator.engine import Engine

    engine = Engine({"default": str(tiny_model_dir)}, device="cpu",
                    speed=SpeedOptions(vae_tiling=True))
    engine.warm_up()
    assert engine.pipeline().vae.use_tiling


def test_a_generate_worker_states_the_options_at_start(
    imagine_env: dict[str, str], start_worker: Callable[..., Process]
) -> None:
    worker = start_worker("generate", env={**imagine_env, "IMAGINE_CHANNELS_LAST": "1"})
    wait_for(lambda: "speed options on" in worker.log(), 60, message="the start-up line")
    assert ("speed options on cpu: compile=off channels_last=on fuse_qkv=off vae_tiling=off "
            "attention=sdpa") in worker.log()
