"""The speed options one by one against the plain pipeline, on the tiny model (CPU by default).

Each option gets a fresh pipeline, a warm-up generation (which pays for compilation), then
`--rounds` timed generations; the plain pipeline is timed the same way. Compilation is timed
separately as `compile_warm_up_s`: a worker pays it once at start, never in a job.

    python -m bench.speedups [--size 256] [--steps 10] [--rounds 3] [--threads 2] [--no-compile]

Last line: `plain_s=… channels_last_s=… fuse_qkv_s=… vae_tiling_s=… compile_s=…
compile_warm_up_s=…` (seconds per image, medians).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from generator import speedups
from generator.loading import load_pipeline
from generator.speedups import SpeedOptions
from generator.tiny_model import build_tiny_model

CASES = {
    "channels_last": SpeedOptions(channels_last=True),
    "fuse_qkv": SpeedOptions(fuse_qkv=True),
    "vae_tiling": SpeedOptions(vae_tiling=True),
    "compile": SpeedOptions(compile=True),
}


def _time(pipe: Any, size: int, steps: int, rounds: int) -> float:
    seconds = []
    for round_ in range(rounds):
        generator = torch.Generator("cpu").manual_seed(round_)
        began = time.perf_counter()
        pipe(prompt="a red fox in the snow", width=size, height=size,
             num_inference_steps=steps, generator=generator, output_type="pil")
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def measure(model: Path, name: str, options: SpeedOptions | None, args: argparse.Namespace
            ) -> tuple[float, float]:
    """Seconds per image with `options` (None: plain), and the warm-up's seconds."""
    pipe = load_pipeline(str(model), args.device, "float32")
    pipe.set_progress_bar_config(disable=True)
    if options is not None:
        speedups.apply(pipe, options)
    began = time.perf_counter()
    _time(pipe, args.size, args.steps, 1)
    warm = time.perf_counter() - began
    per_image = _time(pipe, args.size, args.steps, args.rounds)
    print(f"{name:14s} {per_image:8.3f} s/image  (warm-up {warm:.1f} s)", flush=True)
    return per_image, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_model(Path(folder) / "tiny")
        results = {"plain_s": measure(model, "plain", None, args)[0]}
        for name, options in CASES.items():
            if name == "compile" and args.no_compile:
                continue
            per_image, warm = measure(model, name, options, args)
            results[f"{name}_s"] = per_image
            if name == "compile":
                results["compile_warm_up_s"] = warm
    print(" ".join(f"{key}={value:.3f}" for key, value in results.items()))


if __name__ == "__main__":
    main()
