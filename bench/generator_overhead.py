"""Generator overhead: seconds per image with our Engine against the bare diffusers pipeline.

Builds the tiny model in a temporary folder, loads it once through `Engine` and once as a
plain `StableDiffusionPipeline.from_pretrained`, then times both with the same arguments,
interleaved (ABBA order) so drift hits both alike, and reports medians. Our side includes
what a worker really pays: the progress and cancel callbacks and the PNG encoding. The
bare pipeline gets its progress bar switched off too, so tqdm is not counted against it.

    python -m bench.generator_overhead [--rounds 7] [--threads 2]
    python -m bench.generator_overhead --gpu        # SD-1.5-sized random model, fp16 on CUDA
    python -m bench.generator_overhead --gpu --dry-run   # only validate the SD 1.5 configs (CPU ok)

Last line: `overhead_ratio=… s_per_image_64=… s_per_image_256=… s_per_image_512=…`
(`--gpu`: `gpu_s_per_image_25=… gpu_s_per_image_50=… gpu_overhead_ratio=…`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from generator.request import ImageRequest

PROMPT = "a red fox in the snow, detailed, golden hour"
# (size, steps, rounds): fewer rounds where one image takes seconds.
CPU_CASES = [(64, 20, 9), (256, 20, 5), (512, 20, 3)]


def bare_arguments(request: ImageRequest) -> dict[str, Any]:
    """What a diffusers user would pass for `request`: the same names, the same seeds."""
    assert request.seed is not None
    return dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        width=request.width,
        height=request.height,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        num_images_per_prompt=request.num_images,
        generator=[torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.num_images)],
    )


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(
    engine: Any, bare: Any, request: ImageRequest, rounds: int, sync: Callable[[], None]
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Interleaved (wall, cpu) timings of ours and bare, after one untimed call of each."""

    def ours() -> object:
        return engine.generate(request, on_progress=lambda *_: None, should_cancel=lambda: False)

    def theirs() -> object:
        return bare(**bare_arguments(request)).images

    ours()
    theirs()
    mine: list[tuple[float, float]] = []
    base: list[tuple[float, float]] = []
    for index in range(rounds):
        if index % 2 == 0:
            mine.append(timed(ours, sync))
            base.append(timed(theirs, sync))
        else:
            base.append(timed(theirs, sync))
            mine.append(timed(ours, sync))
    return mine, base


def median(samples: list[tuple[float, float]], which: int = 0) -> float:
    return statistics.median(sample[which] for sample in samples)


def ratios(mine: list[tuple[float, float]], base: list[tuple[float, float]], which: int = 0) -> list[float]:
    return [m[which] / b[which] for m, b in zip(mine, base, strict=True)]


def load_bare(folder: Path, dtype: torch.dtype, device: str) -> Any:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_cpu(rounds_override: int | None) -> None:
    from generator.engine import Engine
    from generator.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="imagine-bench-generator-") as work:
        folder = build_tiny_model(Path(work) / "tiny")
        engine = Engine({"default": str(folder)}, device="cpu")
        engine.warm_up()
        bare = load_bare(folder, torch.float32, "cpu")
        print(f"tiny model, CPU, {torch.get_num_threads()} torch threads")
        wall_ratios: list[float] = []
        cpu_ratios: list[float] = []
        per_image: dict[int, float] = {}
        for size, steps, rounds in CPU_CASES:
            request = ImageRequest(prompt=PROMPT, width=size, height=size, num_inference_steps=steps, seed=1)
            mine, base = compare(engine, bare, request, rounds_override or rounds, lambda: None)
            wall_ratios += ratios(mine, base)
            cpu_ratios += ratios(mine, base, 1)
            per_image[size] = median(mine)
            print(
                f"{size:>4}px {steps} steps, {len(mine)} rounds: ours {median(mine):.3f} s, "
                f"bare {median(base):.3f} s, ratio {statistics.median(ratios(mine, base)):.3f} "
                f"(CPU time: ours {median(mine, 1):.3f} s, bare {median(base, 1):.3f} s, "
                f"ratio {statistics.median(ratios(mine, base, 1)):.3f})"
            )
    # Median of the paired ratios: robust to load from other processes that hits one pair.
    print(f"CPU-time overhead ratio {statistics.median(cpu_ratios):.3f}")
    print(
        f"overhead_ratio={statistics.median(wall_ratios):.3f} s_per_image_64={per_image[64]:.3f} "
        f"s_per_image_256={per_image[256]:.3f} s_per_image_512={per_image[512]:.3f}"
    )


# --- SD 1.5 architecture with random weights (GPU) --------------------------------------

# The configs of stable-diffusion-v1-5, written out so no download is needed.
SD15_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    center_input_sample=False,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    mid_block_scale_factor=1,
)
SD15_VAE: dict[str, Any] = dict(
    sample_size=512,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    norm_num_groups=32,
    act_fn="silu",
    scaling_factor=0.18215,
)
SD15_TEXT_ENCODER: dict[str, Any] = dict(  # openai/clip-vit-large-patch14's text tower
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
SD15_SCHEDULER: dict[str, Any] = dict(  # its PNDM scheduler config
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    clip_sample=False,
)
# Parameter counts of the real SD 1.5 components: the configs above must reproduce them.
SD15_PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


def build_sd15_components(device: str) -> dict[str, Any]:
    """UNet, VAE and text encoder of SD 1.5's shapes, random weights, built on `device`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        return {
            "unet": UNet2DConditionModel(**SD15_UNET),
            "vae": AutoencoderKL(**SD15_VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**SD15_TEXT_ENCODER)),
        }


def check_sd15_configs() -> None:
    """Build the SD 1.5 components on the meta device (no memory) and check their sizes."""
    components = build_sd15_components("meta")
    for name, model in components.items():
        count = sum(p.numel() for p in model.parameters())
        expected = SD15_PARAMETERS[name]
        status = "ok" if count == expected else f"MISMATCH, SD 1.5 has {expected:,}"
        print(f"{name}: {count:,} parameters ({status})")
        if count != expected:
            raise SystemExit(f"the hand-written SD 1.5 {name} config does not match SD 1.5")


def run_gpu(rounds: int) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    from generator.engine import Engine
    from generator.tiny_model import clip_tokenizer

    if not torch.cuda.is_available():
        raise SystemExit(
            f"--gpu needs a CUDA GPU, and torch {torch.__version__} sees none "
            f"(CUDA build: {torch.version.cuda or 'no'}); run without --gpu, or with --dry-run "
            "to only check the SD 1.5 configs"
        )
    check_sd15_configs()
    with tempfile.TemporaryDirectory(prefix="imagine-bench-sd15-") as work:
        folder = Path(work) / "sd15-random"
        components = {k: v.half().eval() for k, v in build_sd15_components("cuda").items()}
        pipe: Any = StableDiffusionPipeline(
            **components,
            tokenizer=clip_tokenizer(),
            scheduler=PNDMScheduler(**SD15_SCHEDULER),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(folder)
        del components, pipe
        torch.cuda.empty_cache()
        engine = Engine({"default": str(folder)}, device="cuda", dtype="float16")
        engine.warm_up()
        # Bare diffusers as loaded by default, with the same sampler our request names.
        bare = load_bare(folder, torch.float16, "cuda")
        from diffusers import EulerDiscreteScheduler

        bare.scheduler = EulerDiscreteScheduler.from_config(bare.scheduler.config)
        print(f"SD 1.5 architecture, random weights, fp16, {torch.cuda.get_device_name()}")
        results: dict[int, tuple[float, float]] = {}
        wall_ratios: list[float] = []
        for steps in (25, 50):
            request = ImageRequest(prompt=PROMPT, width=512, height=512, num_inference_steps=steps, seed=1)
            mine, base = compare(engine, bare, request, rounds, torch.cuda.synchronize)
            wall_ratios += ratios(mine, base)
            results[steps] = (median(mine), median(base))
            print(
                f"512px {steps} steps: ours {results[steps][0]:.3f} s/image, "
                f"bare diffusers {results[steps][1]:.3f} s/image"
            )
    print(
        f"gpu_s_per_image_25={results[25][0]:.3f} gpu_s_per_image_50={results[50][0]:.3f} "
        f"gpu_overhead_ratio={statistics.median(wall_ratios):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per case")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--gpu", action="store_true", help="SD-1.5-sized random model on CUDA")
    parser.add_argument("--dry-run", action="store_true", help="with --gpu: only validate the SD 1.5 configs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu and args.dry_run:
        check_sd15_configs()
    elif args.gpu:
        run_gpu(args.rounds or 5)
    else:
        run_cpu(args.rounds)


if __name__ == "__main__":
    main()
