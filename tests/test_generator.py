"""The generator on the tiny model: seeds, batches, progress, cancellation, modes, errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.errors import GenerationCancelled, GenerationError, ModelError
from generator.png import encode_png, parameters_text, read_parameters
from generator.request import SAMPLER_LABELS, SAMPLERS, SEED_MAX, ImageRequest

# Tiny sizes and step counts keep the whole file to seconds on two cores.
FAST = dict(seed=1, width=64, height=64, num_inference_steps=3, guidance_scale=7.0)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tiny_single_file: Path):  # noqa: ANN201
    from generator.engine import Engine

    # Image bytes depend on the number of torch threads: fix it for hash comparisons.
    return Engine(
        {"default": str(tiny_model_dir), "single": str(tiny_single_file)},
        device="cpu",
        torch_threads=2,
    )


def request(**changes: object) -> ImageRequest:
    return ImageRequest(prompt="a photo of a cat", **{**FAST, **changes})  # type: ignore[arg-type]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


# --- PNG metadata ------------------------------------------------------------------------


def test_parameters_text_is_a1111_format() -> None:
    req = ImageRequest(
        prompt="a red fox",
        negative_prompt="text",
        num_inference_steps=25,
        guidance_scale=7.0,
        width=512,
        height=512,
        sampler="euler_a",
    )
    assert parameters_text(req, 1, "tiny") == (
        "a red fox\nNegative prompt: text\n"
        "Steps: 25, Sampler: Euler a, CFG scale: 7.0, Seed: 1, Size: 512x512, Model: tiny"
    )
    no_negative = parameters_text(req.model_copy(update={"negative_prompt": ""}), 1, "tiny")
    assert "Negative prompt" not in no_negative and no_negative.startswith("a red fox\nSteps: 25")


def test_png_round_trip_is_deterministic() -> None:
    image = Image.new("RGB", (16, 8), (200, 10, 30))
    for text in ("a cat\nSteps: 2", "猫 🐱 naïve\nSteps: 2"):
        data = encode_png(image, text)
        assert data == encode_png(image, text)
        assert read_parameters(data) == text
    assert read_parameters(b"not a png") is None
    plain = io.BytesIO()
    image.save(plain, format="PNG")
    assert read_parameters(plain.getvalue()) is None


def test_light_modules_do_not_import_torch() -> None:
    code = (
        "import sys, generator, generator.request, generator.errors, generator.png; "
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# --- Generation --------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_image(engine) -> None:  # noqa: ANN001
    first = engine.generate(request())
    again = engine.generate(request())
    other = engine.generate(request(seed=2))
    assert first[0].png == again[0].png
    assert not np.array_equal(pixels(first[0].png), pixels(other[0].png))
    assert (first[0].width, first[0].height, first[0].seed) == (64, 64, 1)


def test_matches_bare_diffusers_with_the_same_arguments(engine) -> None:  # noqa: ANN001
    ours = engine.generate(request(negative_prompt="blurry"))
    pipe = engine.pipeline()
    bare = pipe(
        prompt="a photo of a cat",
        negative_prompt="blurry",
        width=64,
        height=64,
        num_inference_steps=3,
        guidance_scale=7.0,
        num_images_per_prompt=1,
        generator=[torch.Generator("cpu").manual_seed(1)],
    ).images[0]
    assert np.array_equal(pixels(ours[0].png), np.asarray(bare, dtype=np.int16))


def test_batch_seeds_are_consecutive(engine) -> None:  # noqa: ANN001
    images = engine.generate(request(seed=7, num_images=4))
    assert [im.seed for im in images] == [7, 8, 9, 10]
    for im in images:
        assert read_parameters(im.png) == im.parameters
        assert f"Seed: {im.seed}," in im.parameters
        assert "Model: tiny" in im.parameters
    # Image i of a batch is the image that seed + i draws alone (up to batched-kernel noise).
    alone = engine.generate(request(seed=9))[0]
    assert np.abs(pixels(images[2].png) - pixels(alone.png)).max() <= 2


def test_seeds_wrap_at_two_to_the_32(engine) -> None:  # noqa: ANN001
    images = engine.generate(request(seed=SEED_MAX, num_images=2, num_inference_steps=1))
    assert [im.seed for im in images] == [SEED_MAX, 0]


def test_seed_must_be_set(engine) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="seeded"):
        engine.generate(request(seed=None))


def test_progress_reports_every_step(engine) -> None:  # noqa: ANN001
    seen: list[tuple[int, int, object]] = []
    engine.generate(request(num_inference_steps=4), on_progress=lambda *a: seen.append(a))
    assert seen == [(1, 4, None), (2, 4, None), (3, 4, None), (4, 4, None)]


def test_cancellation_stops_the_run(engine) -> None:  # noqa: ANN001
    reference = engine.generate(request())[0].png
    steps: list[int] = []
    with pytest.raises(GenerationCancelled):
        engine.generate(
            request(num_inference_steps=4),
            on_progress=lambda step, total, preview: steps.append(step),
            should_cancel=lambda: len(steps) >= 2,
        )
    assert steps == [1, 2]
    with pytest.raises(GenerationCancelled):
        engine.generate(request(), should_cancel=lambda: True)
    # A cancelled run leaves nothing behind that changes the next image.
    assert engine.generate(request())[0].png == reference


def test_callback_errors_reach_the_caller_unwrapped(engine) -> None:  # noqa: ANN001
    def broken(step: int, total: int, preview: object) -> None:
        raise KeyError("progress store down")

    with pytest.raises(KeyError, match="progress store down"):
        engine.generate(request(), on_progress=broken)


def test_img2img_and_upscale_sizes(engine) -> None:  # noqa: ANN001
    source = Image.open(io.BytesIO(engine.generate(request())[0].png))
    load = {"stored.png": source}.__getitem__

    varied = engine.generate(
        request(mode="img2img", source_image="stored.png", width=96, height=64, num_images=2),
        load_image=load,
    )
    assert [(im.width, im.height) for im in varied] == [(96, 64), (96, 64)]
    assert "Denoising strength: 0.75" in varied[0].parameters

    # An upscale is super-resolution to the request's size (the front end asks for factor ×
    # the source): without IMAGINE_UPSCALER, Lanczos plus a light detail pass (said in a
    # note); sizes snap down to multiples of 8. tests/test_operations.py covers the rest.
    upscaled = engine.generate(
        ImageRequest(prompt="a fox", width=64, height=64, seed=3).upscaled(
            "stored.png", 3, 128, 128, 2),
        load_image=load,
    )[0]
    assert (upscaled.width, upscaled.height, upscaled.seed) == (128, 128, 3)
    assert "Size: 128x128" in upscaled.parameters and "Denoising strength: 0.2" in upscaled.parameters
    assert any("IMAGINE_UPSCALER" in note for note in upscaled.notes)

    snapped = engine.generate(
        request(mode="upscale", source_image="stored.png", width=100, height=132),
        load_image=load,
    )[0]
    assert (snapped.width, snapped.height) == (96, 128)

    with pytest.raises(ValueError, match="load_image"):
        engine.generate(request(mode="img2img", source_image="stored.png"))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs(engine, sampler: str) -> None:  # noqa: ANN001
    image = engine.generate(request(sampler=sampler, num_inference_steps=2))[0]
    assert pixels(image.png).shape == (64, 64, 3)
    assert f"Sampler: {SAMPLER_LABELS[sampler]}" in image.parameters or sampler == "dpm++sde"


def test_switching_samplers_reuses_schedulers(engine) -> None:  # noqa: ANN001
    pipe = engine.pipeline()
    engine.generate(request(sampler="euler", num_inference_steps=1))
    euler = pipe.scheduler
    engine.generate(request(sampler="dpm++2m_karras", num_inference_steps=1))
    assert pipe.scheduler is not euler and pipe.scheduler.config.use_karras_sigmas
    engine.generate(request(sampler="euler", num_inference_steps=1))
    assert pipe.scheduler is euler and not euler.config.use_karras_sigmas


def test_single_file_model_draws_the_same_pixels(engine) -> None:  # noqa: ANN001
    folder = engine.generate(request())[0]
    single = engine.generate(request(model="single"))[0]
    assert np.array_equal(pixels(folder.png), pixels(single.png))


def test_progress_bars_are_off(engine) -> None:  # noqa: ANN001
    assert engine.pipeline()._progress_bar_config.get("disable") is True


# --- Errors ------------------------------------------------------------------------------


def test_invalid_size_is_a_generation_error(engine) -> None:  # noqa: ANN001
    with pytest.raises(GenerationError, match="divisible by 8"):
        engine.generate(request(width=60))


def test_unknown_model_and_sampler(engine) -> None:  # noqa: ANN001
    with pytest.raises(ModelError, match="unknown model 'nope'.*default, single"):
        engine.generate(request(model="nope"))
    with pytest.raises(ModelError, match="unknown sampler"):
        engine.generate(request(sampler="warp"))


def test_bad_sources_say_what_to_do(tmp_path: Path) -> None:
    from generator.loading import load_pipeline

    with pytest.raises(ModelError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing"), "cpu", "auto")
    with pytest.raises(ModelError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing.safetensors"), "cpu", "auto")
    with pytest.raises(ModelError, match="no model_index.json"):
        load_pipeline(str(tmp_path), "cpu", "auto")
    with pytest.raises(ModelError, match="imagine model tiny DIR"):
        load_pipeline("nobody-here/no-such-model", "cpu", "auto")


def test_single_file_without_configs_explains_the_folder(tiny_single_file: Path, tmp_path: Path) -> None:
    from generator.loading import load_pipeline

    lonely = tmp_path / "custom.safetensors"
    lonely.write_bytes(tiny_single_file.read_bytes())
    with pytest.raises(ModelError) as error:
        load_pipeline(str(lonely), "cpu", "auto")
    assert str(tmp_path / "custom.config") in error.value.message
    assert "hf download" in error.value.message


def test_devices_and_dtypes() -> None:
    from generator.loading import resolve_device, resolve_dtype
    from settings.errors import ConfigError

    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    if not torch.cuda.is_available():
        assert resolve_device("auto") in ("cpu", "mps")
        with pytest.raises(ConfigError, match="IMAGINE_DEVICE"):
            resolve_device("cuda")


def test_engine_from_settings(tiny_model_dir: Path) -> None:
    from generator.engine import Engine
    from settings import Settings

    settings = Settings(model=str(tiny_model_dir), device="cpu", torch_threads=2)
    engine = Engine.from_settings(settings)
    assert engine.device == "cpu" and engine.dtype == torch.float32
    assert engine.model_label() == "tiny"
    assert torch.get_num_threads() == 2
