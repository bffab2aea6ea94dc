"""GPU memory and utilisation of a generate worker, published for `/metrics`.

torch's allocator statistics belong to the process that holds the models (the prefork
child), so that child publishes them: a daemon thread writes one snapshot every few seconds
to WORKER_GPU_KEY (hostname), with a TTL so a dead worker's numbers vanish. NVML (the
`nvidia-ml-py` package, when installed) adds the device's utilisation and memory as the
driver sees it, other processes included. On a host without a GPU nothing is written and
`/metrics` has no GPU series at all.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from tasks.names import WORKER_GPU_KEY

log = logging.getLogger(__name__)

INTERVAL = 5.0
TTL = 15  # three missed snapshots and the series leave /metrics


@dataclass(frozen=True)
class GpuStats:
    """One GPU as one worker process sees it; bytes, and utilisation as a 0-1 ratio."""

    gpu: str  # torch's device index in this process
    name: str
    allocated: int  # torch.cuda.memory_allocated
    reserved: int  # torch.cuda.memory_reserved
    max_allocated: int  # torch.cuda.max_memory_allocated since the process started
    used: int | None = None  # NVML: memory in use on the device, every process
    total: int | None = None  # NVML: the device's memory
    utilization: float | None = None  # NVML: share of the last sample period busy


def _nvml() -> Any:
    """pynvml, initialised; None without the package or the driver."""
    try:
        import pynvml  # noqa: PLC0415 - optional: `pip install nvidia-ml-py`
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


def _nvml_reading(nvml: Any, torch: Any, index: int) -> dict[str, Any]:
    """NVML's memory and utilisation of torch's device `index` (matched by UUID: torch's
    order follows CUDA_VISIBLE_DEVICES, NVML's does not)."""
    try:
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            handle = nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        else:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        rates = nvml.nvmlDeviceGetUtilizationRates(handle)
    except nvml.NVMLError:
        return {}
    return {"used": int(memory.used), "total": int(memory.total),
            "utilization": float(rates.gpu) / 100.0}


def gpu_snapshot(nvml: Any = None) -> list[GpuStats]:
    """Every GPU this process can use, with NVML's view when `nvml` (from `_nvml`) is given;
    empty unless this process already uses CUDA: importing torch, or starting CUDA in a
    worker drawing on the CPU, would cost seconds and GPU memory for nothing."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return []
    stats = []
    for index in range(torch.cuda.device_count()):
        reading = _nvml_reading(nvml, torch, index) if nvml is not None else {}
        stats.append(GpuStats(
            gpu=str(index), name=str(torch.cuda.get_device_name(index)),
            allocated=int(torch.cuda.memory_allocated(index)),
            reserved=int(torch.cuda.memory_reserved(index)),
            max_allocated=int(torch.cuda.max_memory_allocated(index)), **reading))
    return stats


def publish(client: redis.Redis, hostname: str, stats: list[GpuStats]) -> None:
    """Store a snapshot for /metrics; an empty one stores nothing."""
    if stats:
        client.set(WORKER_GPU_KEY.format(hostname),
                   json.dumps([asdict(item) for item in stats]), ex=TTL)


def start_reporter(client: redis.Redis, hostname: str, interval: float = INTERVAL
                   ) -> threading.Thread | None:
    """In the drawing process: publish snapshots every `interval` s; None on a CPU host."""
    if not hostname or not gpu_snapshot():
        return None

    def run() -> None:
        nvml = _nvml()  # initialised once per process
        while True:
            try:
                publish(client, hostname, gpu_snapshot(nvml))
            except redis.RedisError:
                pass  # Redis restarting: the next snapshot will tell
            except Exception:  # a metrics bug must never take the worker down
                log.exception("GPU statistics not published")
            time.sleep(interval)

    thread = threading.Thread(target=run, name=f"imagine-gpu-{os.getpid()}", daemon=True)
    thread.start()
    return thread
