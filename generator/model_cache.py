"""The models a worker process holds: a few on the device, a few more in CPU memory.

A worker that serves several models (IMAGINE_MODELS) cannot keep them all on one GPU. The
cache keeps at most IMAGINE_MAX_LOADED_MODELS on the device, or, when IMAGINE_MODEL_MEMORY_GB
is set, as many as fit that many gigabytes of weights. The least recently used model makes
room: it moves to CPU memory (moving it back takes a fraction of a load from disk), and CPU
copies beyond the same limit are dropped. On a CPU-only worker the device is CPU memory
already, so a model that makes room is dropped at once.

A model is read from disk into CPU memory first, measured, and only then moved to the
device once room is made, so the device never holds more than the budget.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from generator.errors import ModelError
from generator.loading import load_pipeline
from generator.png import model_label
from generator.samplers import SchedulerCache
from generator.speedups import SpeedOptions, apply
from settings.i18n import _

log = logging.getLogger(__name__)

StatusCallback = Callable[[str], None]
GIB = 1024**3
_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


@dataclass
class LoadedModel:
    """One model: its text-to-image pipeline, the pipelines sharing its weights (image to
    image, inpainting, ControlNet variants: built on first use), schedulers and size."""

    name: str
    label: str
    family: str
    text2image: Any
    schedulers: SchedulerCache
    nbytes: int
    derived: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelLoad:
    """One load for /metrics: from `disk`, or back from `cpu` memory to the device."""

    model: str
    seconds: float
    origin: str


def pipeline_bytes(pipe: Any) -> int:
    """The bytes of every parameter and buffer of the pipeline's torch modules."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            tensors = [*component.parameters(), *component.buffers()]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def load_model(name: str, source: str, family: str | None, dtype: torch.dtype,
               speed: SpeedOptions | None = None) -> LoadedModel:
    """`source` read into CPU memory in `dtype` (the device's), with its family: the
    catalogue's `family`, else what the pipeline's class and configs say; `speed`'s options
    applied (they survive the move to the device)."""
    pipe = load_pipeline(source, "cpu", _DTYPE_NAMES[dtype])
    if speed is not None and speed.any:
        log.info("speed options applied to %s: %s", name, ", ".join(apply(pipe, speed)) or "none")
    if family is None:
        from generator.control import family_of  # noqa: PLC0415 - cv2 only when needed

        family = family_of(pipe)
    return LoadedModel(name=name, label=model_label(source), family=family, text2image=pipe,
                       schedulers=SchedulerCache(pipe.scheduler.config),
                       nbytes=pipeline_bytes(pipe))


class ModelCache:
    """Least-recently-used models on the device, then in CPU memory, then dropped."""

    def __init__(
        self,
        load: Callable[[str], LoadedModel],
        device: str,
        *,
        max_loaded: int = 2,
        memory_gb: float | None = None,
    ) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self._load = load
        self.device = device
        self.max_loaded = max_loaded
        self.memory_budget = None if memory_gb is None else int(memory_gb * GIB)
        # Least recently used first.
        self._on_device: OrderedDict[str, LoadedModel] = OrderedDict()
        self._on_cpu: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loads: list[ModelLoad] = []
        self._lock = threading.RLock()

    @property
    def on_device(self) -> tuple[str, ...]:
        """The models on the device, least recently used first."""
        return tuple(self._on_device)

    @property
    def on_cpu(self) -> tuple[str, ...]:
        """The models moved out to CPU memory, least recently used first."""
        return tuple(self._on_cpu)

    def take_loads(self) -> list[ModelLoad]:
        """The loads since the last call (for /metrics), oldest first."""
        with self._lock:
            loads, self._loads = self._loads, []
            return loads

    def get(self, name: str, on_status: StatusCallback | None = None) -> LoadedModel:
        """`name` on the device, loaded (or brought back from CPU memory) if it is not;
        `on_status("loading model NAME…")` is said before either."""
        with self._lock:
            model = self._on_device.get(name)
            if model is not None:
                self._on_device.move_to_end(name)
                return model
            if on_status is not None:
                on_status(_("loading model {name}…").format(name=name))
            began = time.perf_counter()
            model = self._on_cpu.pop(name, None)
            origin = "cpu" if model is not None else "disk"
            if model is None:
                model = self._load(name)
            self._make_room(model.nbytes)
            self._to_device(model)
            self._on_device[name] = model
            self._loads.append(ModelLoad(name, time.perf_counter() - began, origin))
            return model

    def _make_room(self, nbytes: int) -> None:
        if self.memory_budget is not None and nbytes > self.memory_budget:
            # Refusing would leave the model unusable; the operator learns why memory is short.
            log.warning("a model of %.1f GB is larger than IMAGINE_MODEL_MEMORY_GB=%.1f: it is "
                        "loaded alone", nbytes / GIB, self.memory_budget / GIB)
        while self._on_device and not self._fits(self._on_device, nbytes, extra_models=1):
            _, evicted = self._on_device.popitem(last=False)
            if self.device == "cpu":
                _drop(evicted)
                continue
            self._move(evicted, "cpu")
            self._on_cpu[evicted.name] = evicted
            while self._on_cpu and not self._fits(self._on_cpu, 0, extra_models=0):
                _drop(self._on_cpu.popitem(last=False)[1])
        _release_device_memory()

    def _fits(self, tier: OrderedDict[str, LoadedModel], nbytes: int, extra_models: int) -> bool:
        if self.memory_budget is None:
            return len(tier) + extra_models <= self.max_loaded
        return sum(m.nbytes for m in tier.values()) + nbytes <= self.memory_budget

    def _to_device(self, model: LoadedModel) -> None:
        if self.device == "cpu":
            return
        try:
            self._move(model, self.device)
        except RuntimeError as exc:  # out of memory: nothing of it may stay half-moved
            _drop(model)
            _release_device_memory()
            gb = model.nbytes / GIB
            raise ModelError(
                _("model {model_name} ({gb:.1f} GB) does not fit on {device} next to what else "
                  "runs there: lower IMAGINE_MAX_LOADED_MODELS or IMAGINE_MODEL_MEMORY_GB").format(
                    model_name=model.name, gb=gb, device=self.device)
            ) from exc

    @staticmethod
    def _move(model: LoadedModel, device: str) -> None:
        # The derived pipelines share these modules, so they move along; a ControlNet is
        # shared by every model of its family and stays where it is.
        # Half-precision weights wait in CPU memory without running there: diffusers' warning
        # that they cannot run on the CPU does not apply.
        model.text2image.to(device, silence_dtype_warnings=True)


def _drop(model: LoadedModel) -> None:
    model.derived.clear()
    model.text2image = None
    gc.collect()


def _release_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
