"""LoRAs and model switches: what they add to a job, measured through our Engine.

- lora_ratio: a job with one LoRA at weight 0.8 against the same job without, on one
  engine, interleaved (ABBA) so drift hits both alike; the median of paired CPU-time
  ratios (this process's CPU seconds: on a shared machine wall time also counts others').
- model_switch_s: a job whose model must be loaded because IMAGINE_MAX_LOADED_MODELS=1
  made room for the other model, minus a job on a model already loaded (medians of CPU
  time on a CPU device, of wall time on a GPU; 64 px, 2 steps: a switch costs the same
  whatever the job draws). On a GPU the evicted model waits in CPU memory, so this is a
  move back; on a CPU device it is a load from disk.
- cached_switch_s: the same alternation with IMAGINE_MAX_LOADED_MODELS=2 (both held), minus
  a job on the same model: what alternating between two held models costs.

    python -m bench.models [--model DIR] [--other DIR] [--lora FILE] [--size 256]
                           [--steps 20] [--rounds 5] [--threads N] [--device cpu]

The tiny model (twice, as two models) and its tiny LoRA by default. Last line:
`lora_ratio=… model_switch_s=… cached_switch_s=…`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from bench.generator_overhead import median, timed
from bench.operations import compare_pair
from generator.engine import Engine
from generator.request import ImageRequest, LoraUse

PROMPT = "a lighthouse on a cliff at dusk, detailed"
SEED = 3


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else lambda: None


def lora_ratio(engine: Engine, request: ImageRequest, lora: str, rounds: int,
               device: str) -> float:
    """Median paired CPU-time ratio of a job with the LoRA to the same job without."""
    styled = request.model_copy(update={"loras": (LoraUse(name=lora, weight=0.8),)})
    sync = _sync(device)
    mine, base = compare_pair(lambda: (engine.generate(styled), sync()),
                              lambda: (engine.generate(request), sync()), rounds)
    ratio = statistics.median(m[1] / b[1] for m, b in zip(mine, base, strict=True))
    wall = statistics.median(m[0] / b[0] for m, b in zip(mine, base, strict=True))
    print(f"LoRA: with {median(mine):.3f} s, without {median(base):.3f} s (wall medians, paired "
          f"ratio {wall:.3f}); CPU time {median(mine, 1):.3f} s / {median(base, 1):.3f} s, "
          f"paired ratio {ratio:.3f}")
    return ratio


def switch_cost(engine: Engine, request: ImageRequest, rounds: int, device: str,
                what: str) -> float:
    """Median CPU seconds of a job right after the other model's minus one after its own."""
    first, other = request, request.model_copy(update={"model": "other"})
    sync = _sync(device)
    engine.generate(first)
    engine.generate(other)  # both loaded once; `other` is the current one
    engine.take_model_loads()
    switched: list[tuple[float, float]] = []
    cached: list[tuple[float, float]] = []
    for _ in range(rounds):
        # Each model in turn: its first job follows the other model's, its second its own.
        for job in (first, other):
            draw = _drawer(engine, job)
            switched.append(timed(draw, sync))
            cached.append(timed(draw, sync))
    loads = engine.take_model_loads()
    # Loading is this process's work (reading and unpacking weights); its CPU time is what
    # others' work on a shared machine does not inflate. A GPU move waits on the device, so
    # there wall time is the figure.
    which = 0 if device.startswith("cuda") else 1
    cost = median(switched, which) - median(cached, which)
    origins = sorted({load.origin for load in loads})
    load_s = statistics.median(load.seconds for load in loads) if loads else 0.0
    print(f"{what}: job after a switch {median(switched):.3f} s wall / {median(switched, 1):.3f} "
          f"s CPU, on a loaded model {median(cached):.3f} s / {median(cached, 1):.3f} s "
          f"(medians); {len(loads)} loads ({', '.join(origins) or 'none'}), median "
          f"{load_s:.3f} s wall each")
    return cost


def _drawer(engine: Engine, request: ImageRequest) -> Callable[[], object]:
    return lambda: engine.generate(request)


def run(model: Path, other: Path, lora_dir: Path, lora: str, size: int, steps: int,
        rounds: int, device: str) -> None:
    request = ImageRequest(prompt=PROMPT, width=size, height=size, seed=SEED,
                           num_inference_steps=steps)
    sources = {"default": str(model), "other": str(other)}
    print(f"{model.name} / {other.name}, {device}, {torch.get_num_threads()} torch threads, "
          f"{size}px, {steps} steps, {rounds} rounds")
    engine = Engine(sources, device=device, lora_dir=lora_dir, max_loaded_models=2)
    ratio = lora_ratio(engine, request, lora, rounds, device)
    # A switch costs the same whatever the job draws: the smallest job keeps its noise out.
    small = request.model_copy(update={"width": 64, "height": 64, "num_inference_steps": 2})
    cached = switch_cost(engine, small, rounds, device, "two models held")
    began = time.perf_counter()
    single = Engine(sources, device=device, max_loaded_models=1)
    switch = switch_cost(single, small, rounds, device, "one model held")
    print(f"(switch measurements took {time.perf_counter() - began:.1f} s)")
    print(f"lora_ratio={ratio:.3f} model_switch_s={switch:.3f} cached_switch_s={cached:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="diffusers folder (default: tiny)")
    parser.add_argument("--other", type=Path, default=None,
                        help="the second model (default: a copy of --model)")
    parser.add_argument("--lora", type=Path, default=None,
                        help="a LoRA .safetensors for --model (default: the tiny one)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per figure")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="imagine-bench-models-") as work:
        model = args.model
        if model is None:
            from generator.tiny_model import build_tiny_model

            model = build_tiny_model(Path(work) / "tiny")
        other = args.other
        if other is None:
            other = Path(shutil.copytree(model, Path(work) / f"{model.name}-copy"))
        lora = args.lora
        if lora is None:
            from generator.tiny_adapters import STYLE_LORA, build_tiny_loras

            lora = build_tiny_loras(Path(work) / "loras", model)[STYLE_LORA]
        run(model, other, lora.parent, lora.stem, args.size, args.steps, args.rounds, args.device)


if __name__ == "__main__":
    main()
