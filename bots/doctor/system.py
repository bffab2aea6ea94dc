"""Python, torch, the GPU this host offers, and the models IMAGINE_MODEL(S) name."""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bots.doctor.report import Check, fail, ok, skipped, warn
from settings import Settings

SUPPORTED_PYTHON = ((3, 10), (3, 13))
TORCH_INSTALL = ("pip install torch==2.14.1 torchvision==0.29.1 (CPU-only machines: add "
                 "--index-url https://download.pytorch.org/whl/cpu)")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pth")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # owner/name, as generator.loading reads it
GB = 1024 ** 3


def check_python() -> Check:
    version = sys.version_info[:2]
    text = ".".join(map(str, sys.version_info[:3]))
    low, high = SUPPORTED_PYTHON
    if low <= version <= high:
        return ok("python", f"Python {text}")
    return warn("python", f"Python {text}: imagine is tested on 3.10–3.13",
                "use Python 3.10–3.13 in the virtual environment (wheels of every "
                "dependency exist there)")


def check_torch() -> Check:
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return fail("torch", "torch is not installed", TORCH_INSTALL)
    try:
        import torch  # noqa: PLC0415 - seconds to import: only when the doctor runs
    except Exception as exc:  # a broken install (missing CUDA libraries, ABI mismatch)
        return fail("torch", f"torch {version} does not import: {exc}",
                    "reinstall it: " + TORCH_INSTALL)
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    return ok("torch", f"torch {version} ({build})")


def model_weights_bytes(settings: Settings) -> int:
    """The on-disk weights of the default model: a local folder or file, or a hub id's
    snapshot in the local Hugging Face cache; 0 when unknown."""
    path = Path(settings.model).expanduser()
    if not path.exists() and _HUB_ID.match(settings.model):
        path = _cached_snapshot(settings.model) or path
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    total = 0
    for component in [path, *[p for p in path.iterdir() if p.is_dir()]]:
        files = [f for f in component.glob("*") if f.suffix in WEIGHT_SUFFIXES]
        # A folder with both full and fp16 variants loads one of them, not both.
        if files:
            total += max(f.stat().st_size for f in files)
    return total


def _cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "model_index.json")
    return Path(found).parent if isinstance(found, str) else None


def check_gpu(settings: Settings) -> Check:
    try:
        import torch  # noqa: PLC0415
    except Exception:
        return skipped("gpu", "torch is not importable (see the torch check)")
    device = settings.device
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if device.startswith("cuda") and not cuda:
        return fail("gpu", f"IMAGINE_DEVICE={device} but torch sees no CUDA GPU",
                    "install a CUDA build of torch and the NVIDIA driver, check "
                    "CUDA_VISIBLE_DEVICES, or set IMAGINE_DEVICE=auto")
    if device == "mps" and not mps:
        return fail("gpu", "IMAGINE_DEVICE=mps but this torch has no MPS backend",
                    "set IMAGINE_DEVICE=auto or cpu")
    if cuda and device != "cpu":
        return _cuda_memory(torch, settings)
    if mps and device != "cpu":
        return ok("gpu", "Apple GPU (MPS) available")
    if device == "cpu" and (cuda or mps):
        return warn("gpu", "IMAGINE_DEVICE=cpu although this host has a GPU torch can use",
                    "set IMAGINE_DEVICE=auto to draw on the GPU (much faster)")
    fix = ("torch is a CUDA build but sees no GPU: check `nvidia-smi` (the driver) and "
           "CUDA_VISIBLE_DEVICES" if torch.version.cuda else
           "on a machine with an NVIDIA GPU install the CUDA build of torch")
    return warn("gpu", "no GPU: images are drawn on the CPU (minutes for a 512 px image of "
                       "a real model)", fix + "; a CPU suits the tiny test model and trials")


def _cuda_memory(torch: Any, settings: Settings) -> Check:
    count = torch.cuda.device_count()
    match = re.fullmatch(r"cuda:([0-9]+)", settings.device)
    index = int(match.group(1)) if match else 0
    if index >= count:
        return fail("gpu", f"IMAGINE_DEVICE={settings.device} but torch sees {count} GPU(s)",
                    f"use cuda:0 to cuda:{count - 1}, or IMAGINE_DEVICE=auto")
    props = torch.cuda.get_device_properties(index)
    free, total = torch.cuda.mem_get_info(index)
    weights = model_weights_bytes(settings)
    detail = (f"{count} CUDA GPU(s); cuda:{index} {props.name}, {total / GB:.1f} GB "
              f"({free / GB:.1f} GB free)")
    if not weights:
        return ok("gpu", detail + "; model size unknown (not a local folder or file)")
    detail += f"; model weights {weights / GB:.1f} GB on disk"
    if weights > free:
        return fail("gpu", detail + ": the model does not fit in the free memory",
                    "free the GPU (another process holds it), use a smaller model, or "
                    "IMAGINE_DTYPE=float16 if the weights are stored as float32")
    if weights * 1.5 > free:
        return warn("gpu", detail + ": little room left for drawing",
                    "large images or batches may run out of memory: lower "
                    "IMAGINE_MAX_BATCH or IMAGINE_MAX_PIXELS")
    return ok("gpu", detail)


def check_models(settings: Settings) -> list[Check]:
    """One check per catalogue model: a local source exists and is a model; a hub id is
    looked up in the local Hugging Face cache only (the doctor never reaches the hub)."""
    return [_model_check(name, source) for name, source in settings.model_sources.items()]


def _model_check(name: str, source: str) -> Check:
    label = f"model {name}"
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return ok(label, f"{source}: a diffusers folder")
        return fail(label, f"{source} is a folder without model_index.json",
                    "point the variable at the folder that holds model_index.json (a "
                    "diffusers model), or at a .safetensors checkpoint")
    if path.is_file():
        return _single_file(label, path)
    if _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        return _hub_model(label, source)
    variable = "IMAGINE_MODEL" if name == "default" else f'IMAGINE_MODELS["{name}"]'
    return fail(label, f"{source}: no such file or folder",
                f"set {variable} to a diffusers folder, a .safetensors file or a hub id "
                "such as stabilityai/sd-turbo (`imagine model tiny DIR` writes a small "
                "offline test model)")


def _single_file(label: str, path: Path) -> Check:
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        return fail(label, f"{path} is a file but not a checkpoint",
                    "use a .safetensors or .ckpt file, a diffusers folder or a hub id")
    if path.suffix.lower() == ".safetensors":
        try:
            with path.open("rb") as file:
                size = int.from_bytes(file.read(8), "little")
                json.loads(file.read(size))
        except (OSError, ValueError) as exc:
            return fail(label, f"{path} is not a readable safetensors file ({exc})",
                        "download the checkpoint again (it may be truncated)")
    configs = [c for c in (path.with_suffix(".config"), path.with_suffix(""))
               if (c / "model_index.json").is_file()]
    if configs:
        return ok(label, f"{path}: a checkpoint with its configs in {configs[0]}")
    return warn(label, f"{path}: a checkpoint without a configs folder beside it",
                f"offline, loading needs its base model's configs in {path.with_suffix('.config')}/ "
                "(README, Real models; `imagine model tiny DIR --single-file` shows the layout)")


def _hub_model(label: str, repo_id: str) -> Check:
    import os  # noqa: PLC0415

    if _cached_snapshot(repo_id) is not None:
        return ok(label, f"{repo_id}: in the local Hugging Face cache (the hub itself was "
                         "not asked)")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    detail = f"{repo_id}: a hub id not in the local Hugging Face cache"
    if offline:
        return fail(label, detail + " and HF_HUB_OFFLINE is set: it cannot be downloaded",
                    f"on a machine with internet run `hf download {repo_id}` and copy the "
                    "cache (or --local-dir folder) here, or unset HF_HUB_OFFLINE")
    return warn(label, detail + "; the worker downloads it on its first start (this check "
                                "does not reach the hub)",
                f"make sure the worker can reach huggingface.co, or `hf download {repo_id}` "
                "beforehand")
