"""LoRAs from IMAGINE_LORA_DIR, active for one job at a time.

A LoRA is loaded into the pipeline's UNet (and text encoder when it has layers for it) as a
peft adapter the first time a job names it, and stays loaded: the next job naming it only
sets its weight. Outside `applied` every adapter is disabled, so a job without LoRAs draws
exactly what a pipeline that never saw one draws. Adapters live on the modules, which
img2img and ControlNet variants of a pipeline share (`from_pipe`), so one cache serves all.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from generator.errors import LoraError, first_line
from generator.library import model_label
from generator.request import MAX_LORAS, LoraUse
from settings.i18n import _

# Loaded adapters kept per pipeline; beyond this the least recently used are deleted. A
# LoRA costs a few to a few hundred MB of device memory; a handful covers a busy server.
MAX_LOADED = MAX_LORAS
# Cross-attention width of a LoRA's key projection → the base model it was trained on.
_MADE_FOR = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL", 4096: "SD3 or Flux"}
# What peft and torch say when a LoRA's layers do not match the model's.
_MISFIT = ("size mismatch", "not found in the base model", "target modules", "shape")

# denoiser module → adapter name → (file, size, mtime) it was loaded from, least recent first.
_loaded: weakref.WeakKeyDictionary[Any, OrderedDict[str, tuple[str, int, int]]] = (
    weakref.WeakKeyDictionary())


@contextmanager
def applied(pipe: Any, files: Mapping[str, Path], uses: Sequence[LoraUse]) -> Iterator[None]:
    """Activate exactly `uses` (name from `files`, weight) on `pipe` for the block.

    Loads each LoRA once per pipeline modules and keeps it; on leaving, also by an
    exception, every adapter is disabled again. Raises LoraError for a name not in
    `files`, a file that cannot be read, or a LoRA made for another base model.
    """
    if not uses:
        yield
        return
    if len(uses) > MAX_LOADED:
        # Loading the last would drop the first from the cache before the job ran.
        raise LoraError(_("A job may use at most {MAX_LOADED} LoRAs; this one names "
                          "{uses_length}").format(MAX_LOADED=MAX_LOADED, uses_length=len(uses)))
    names = [_ensure(pipe, files, use.name) for use in uses]
    try:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=[use.weight for use in uses])
        yield
    finally:
        pipe.disable_lora()


def adapter_name(stem: str) -> str:
    """The peft adapter name for a LoRA file stem: peft names take no dots, so anything but
    letters, digits, - and _ becomes _, with a short hash to keep two such stems apart."""
    safe = re.sub(r"[^0-9A-Za-z_-]", "_", stem)
    if safe == stem:
        return stem
    return f"{safe}_{hashlib.sha1(stem.encode()).hexdigest()[:6]}"


def loaded(pipe: Any) -> list[str]:
    """Adapter names loaded into `pipe`'s modules, least recently used first."""
    return list(_cache(pipe))


def _ensure(pipe: Any, files: Mapping[str, Path], name: str) -> str:
    path = files.get(name)
    if path is None:
        known = ", ".join(sorted(files)) or _("none in IMAGINE_LORA_DIR")
        raise LoraError(_("Unknown LoRA {name!r} (LoRAs: {known})").format(
                            name=name, known=known))
    if not hasattr(pipe, "load_lora_weights"):
        raise LoraError(_("Model {model_label} takes no LoRAs; leave out {name}").format(
                            model_label=model_label(pipe), name=name))
    adapter = adapter_name(name)
    cache = _cache(pipe)
    signature = _signature(name, Path(path))
    present = adapter in _present(pipe)
    if present and cache.get(adapter) == signature:
        cache.move_to_end(adapter)
        return adapter
    if present:
        # The file changed on disk since it was loaded: load the new one.
        pipe.delete_adapters(adapter)
    cache.pop(adapter, None)
    _evict(pipe, cache)
    _load(pipe, name, Path(path), adapter)
    cache[adapter] = signature
    return adapter


def _cache(pipe: Any) -> OrderedDict[str, tuple[str, int, int]]:
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None) or pipe
    cache = _loaded.get(denoiser)
    if cache is None:
        cache = _loaded[denoiser] = OrderedDict()
    present = _present(pipe)
    for stale in [adapter for adapter in cache if adapter not in present]:
        del cache[stale]
    return cache


def _present(pipe: Any) -> set[str]:
    return {adapter for adapters in pipe.get_list_adapters().values() for adapter in adapters}


def _signature(name: str, path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise LoraError(_("LoRA {name} ({path_name}) cannot be read: {first_line}").format(
                            name=name, path_name=path.name, first_line=first_line(exc))) from exc
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _evict(pipe: Any, cache: OrderedDict[str, tuple[str, int, int]]) -> None:
    while len(cache) >= MAX_LOADED:
        oldest, _ = cache.popitem(last=False)
        pipe.delete_adapters(oldest)


def _load(pipe: Any, name: str, path: Path, adapter: str) -> None:
    try:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
    except Exception as exc:
        _forget(pipe, adapter)
        if any(word in str(exc).lower() for word in _MISFIT):
            raise _misfit(pipe, name, path) from exc
        raise LoraError(_("LoRA {name} ({path_name}) could not be loaded: {first_line}").format(
                            name=name, path_name=path.name, first_line=first_line(exc))) from exc
    finally:
        # Loading activates the new adapter; it only counts inside `applied`.
        pipe.disable_lora()
    adapters = pipe.get_list_adapters()
    denoisers = [part for part in ("unet", "transformer") if part in adapters]
    if not any(adapter in adapters[part] for part in denoisers):
        # diffusers loads nothing, with a warning, when no layer's name matches.
        _forget(pipe, adapter)
        raise _misfit(pipe, name, path)


def _forget(pipe: Any, adapter: str) -> None:
    if adapter in _present(pipe):
        pipe.delete_adapters(adapter)


def _misfit(pipe: Any, name: str, path: Path) -> LoraError:
    made_for = _made_for(path)
    own = getattr(getattr(getattr(pipe, "unet", None), "config", None), "cross_attention_dim", None)
    if made_for is not None and isinstance(own, int) and made_for == _MADE_FOR.get(own):
        # Same width as this model's: the layout differs, not the base model; no hint then.
        made_for = None
    origin = (_("it was made for {base}").format(base=made_for) if made_for
              else _("it was made for another base model, e.g. SDXL"))
    return LoraError(_("LoRA {name} does not fit model {model_label} ({origin})").format(
                         name=name, model_label=model_label(pipe), origin=origin))


def _made_for(path: Path) -> str | None:
    """The base model a LoRA file was trained on, from its cross-attention key width."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as tensors:
            for key in tensors.keys():  # noqa: SIM118 - safe_open is no mapping
                if re.search(r"attn2[._]to_k.*(down|lora_A)", key):
                    width = tensors.get_slice(key).get_shape()[-1]
                    return _MADE_FOR.get(width)
    except Exception:  # noqa: BLE001 - only a hint for the message; the error stands without it
        return None
    return None
