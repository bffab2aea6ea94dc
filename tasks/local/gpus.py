"""The start plan of `imagine up` on a machine with GPUs: one generate worker per GPU.

Each worker is `imagine worker --gpu N` (IMAGINE_DEVICE=cuda:N, its own Celery node name),
so N GPUs draw N jobs at once, each holding its own models. Without a GPU, or with a
device chosen explicitly (cpu, mps, cuda:N), one worker runs as before.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("imagine.up")

# torch counts GPUs in a child process: importing it costs the supervisor ~1 s and
# hundreds of MB, and CUDA started before a fork is unusable in the forked process.
_COUNT_SCRIPT = "import torch; print(torch.cuda.device_count())"
COUNT_TIMEOUT = 120.0


def visible_gpus() -> int:
    """CUDA GPUs torch sees here (CUDA_VISIBLE_DEVICES applies); 0 when it cannot tell."""
    try:
        done = subprocess.run([sys.executable, "-c", _COUNT_SCRIPT], capture_output=True,
                              text=True, timeout=COUNT_TIMEOUT, check=True)
        return int(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        log.warning("could not count GPUs (%s); starting one generate worker", exc)
        return 0


@dataclass(frozen=True)
class GenerateWorker:
    """One generate worker of the plan: its name in logs and its extra CLI arguments."""

    name: str
    args: tuple[str, ...] = ()
    gpu: int | None = None


def generate_workers(device: str, count_gpus: Callable[[], int] = visible_gpus
                     ) -> list[GenerateWorker]:
    """One worker per visible GPU when IMAGINE_DEVICE is auto or cuda; else one worker."""
    if device not in ("auto", "cuda"):
        return [GenerateWorker("generate worker")]
    count = count_gpus()
    if count <= 0:
        return [GenerateWorker("generate worker")]
    return [GenerateWorker(f"generate worker gpu{n}", ("--gpu", str(n)), n)
            for n in range(count)]
