"""What one live preview costs next to one denoising step (tiny model, CPU or a GPU).

Builds the tiny model (with its tiny TAESD) in a temporary folder, draws one image through
diffusers timing every step, and decodes that image's latents the way a worker does
(generator.previews.preview_maker: linear, then TAESD) a few times each. The figures are
medians in milliseconds; bench/throughput.py measures the same cost end to end.

    python -m bench.preview_cost [--size 256] [--steps 12] [--rounds 9] [--threads 2]

The last line is `preview_linear_ms=… preview_taesd_ms=… step_ms=…`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class PreviewCost:
    linear_ms: float
    taesd_ms: float
    step_ms: float

    def line(self) -> str:
        return (f"preview_linear_ms={self.linear_ms:.2f} preview_taesd_ms={self.taesd_ms:.2f} "
                f"step_ms={self.step_ms:.2f}")


def preview_cost(model_dir: Path, *, size: int = 256, steps: int = 12, rounds: int = 9,
                 device: str = "cpu") -> PreviewCost:
    """Median ms of a linear preview, a TAESD preview and one denoising step at `size` px."""
    import torch
    from diffusers import StableDiffusionPipeline

    from generator.previews import TaesdPreviewMaker, preview_maker
    from generator.tiny_model import TAESD_FOLDER

    pipe: Any = StableDiffusionPipeline.from_pretrained(model_dir).to(device)
    pipe.set_progress_bar_config(disable=True)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    marks: list[float] = []
    kept: dict[str, Any] = {}

    def on_step(_pipe: Any, _step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        sync()
        marks.append(time.perf_counter())
        kept["latents"] = kwargs["latents"]
        return kwargs

    pipe("a lighthouse", height=size, width=size, num_inference_steps=steps,
         generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=on_step,
         callback_on_step_end_tensor_inputs=["latents"], output_type="latent")
    # The first step carries warm-up; the gaps between later ones are steady steps.
    step_ms = statistics.median(b - a for a, b in zip(marks[1:], marks[2:], strict=False)) * 1000
    latents = kept["latents"]
    linear = preview_maker("sd15", {}, device, None)
    taesd = preview_maker("sd15", {"*": str(model_dir / TAESD_FOLDER)}, device, pipe.dtype)
    if not isinstance(taesd, TaesdPreviewMaker):
        raise SystemExit(f"the tiny TAESD in {model_dir / TAESD_FOLDER} did not load")
    return PreviewCost(linear_ms=_median_ms(lambda: linear.decode(latents), sync, rounds),
                       taesd_ms=_median_ms(lambda: taesd.decode(latents), sync, rounds),
                       step_ms=step_ms)


def _median_ms(work: Callable[[], object], sync: Callable[[], None], rounds: int) -> float:
    work()  # warm-up: first-call allocations and kernel choices
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch

    from generator.tiny_model import build_tiny_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="imagine-preview-cost-") as folder:
        model_dir = build_tiny_model(Path(folder) / "tiny")
        cost = preview_cost(model_dir, size=args.size, steps=args.steps, rounds=args.rounds,
                            device=args.device)
    print(f"tiny model, {args.size} px, {args.device}: a step {cost.step_ms:.1f} ms; a preview "
          f"{cost.linear_ms:.1f} ms linear, {cost.taesd_ms:.1f} ms TAESD "
          f"({cost.taesd_ms / cost.step_ms:.2f} steps)")
    print(cost.line())


if __name__ == "__main__":
    main()
