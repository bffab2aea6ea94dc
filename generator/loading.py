"""Loading a diffusers pipeline from a hub id, a local folder or a single checkpoint file.

Imported only by the GPU worker (and the local CLI): it imports torch at module level and
diffusers on first use.

Single files (`.safetensors`, `.ckpt`) carry weights but no configs. `from_single_file`
reads the configs from a folder laid out like a diffusers model without its weights
(model_index.json, unet/config.json, vae/config.json, text_encoder/config.json,
tokenizer/, scheduler/). For `/models/NAME.safetensors` the folder is, in this order:
the `config` argument; `/models/NAME.config/`; `/models/NAME/`. Without one, diffusers
guesses the base model from the weights and downloads its configs from the Hub, which
fails offline with a ModelError that says how to make the folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from generator.errors import ModelError, first_line
from settings.errors import ConfigError
from settings.i18n import N_, _

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
OFFLINE_HINT = N_("set IMAGINE_MODEL to a local folder or run `imagine model tiny DIR`")
# owner/name on the Hub (a bare name is also a valid repo id, but far more often a typo'd path)
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_device(device: str) -> str:
    """`auto` → cuda, then mps, then cpu; an explicit device must exist (`cuda:N`: GPU N of
    those torch sees, CUDA_VISIBLE_DEVICES applied).

    `cuda:N` also becomes the process's current CUDA device: calls that take no device
    (empty_cache, memory statistics) then mean the GPU this worker is pinned to.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"IMAGINE_DEVICE=cuda but torch {torch.__version__} sees no CUDA GPU: "
            "set IMAGINE_DEVICE=auto or cpu, or install a CUDA build of torch"
        )
    gpu = re.fullmatch(r"cuda:([0-9]+)", device)
    if gpu is not None:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(gpu.group(1)) >= count:
            allowed = f"cuda:0 to cuda:{count - 1}" if count else "auto or cpu"
            raise ConfigError(f"IMAGINE_DEVICE={device} but torch sees {count} CUDA GPU"
                              f"{'' if count == 1 else 's'}: use {allowed}")
        torch.cuda.set_device(device)
        return device
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("IMAGINE_DEVICE=mps but this torch has no MPS backend: use auto or cpu")
    if device not in ("cuda", "cpu", "mps"):
        raise ConfigError(f"IMAGINE_DEVICE={device!r} is invalid: use auto, cuda, cuda:N, cpu "
                          "or mps")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`auto` → float16 on CUDA (half the memory, tensor cores), float32 elsewhere."""
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    names = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in names:
        raise ConfigError(f"IMAGINE_DTYPE={dtype!r} is invalid: use auto, {', '.join(names)}")
    return names[dtype]


def load_pipeline(source: str, device: str, dtype: str, *, config: str | None = None) -> Any:
    """A text-to-image pipeline for `source` on `device`, progress bars off.

    `source`: a hub id (`owner/name`), a local diffusers folder (with model_index.json) or
    a `.safetensors`/`.ckpt` file; `config` is the configs folder for a single file (see
    the module docstring for where it is looked for otherwise). `device` and `dtype` take
    the settings' values, `auto` included. Every failure is a ModelError saying what to do.
    """
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    path = Path(source).expanduser()
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        pipe = _load_single_file(path, torch_dtype, config)
    elif path.is_dir():
        pipe = _load_folder(path, torch_dtype)
    elif path.exists():
        raise ModelError(
            _("model {source!r} is a file but not a checkpoint: use a .safetensors or .ckpt "
              "file, a diffusers folder (with model_index.json) or a hub id").format(
                source=source)
        )
    elif _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        pipe = _load_hub(source, torch_dtype)
    else:
        raise ModelError(
            _("model path {source!r} does not exist: point IMAGINE_MODEL at a diffusers "
              "folder, a .safetensors file or a hub id like stabilityai/sd-turbo").format(
                source=source)
        )
    try:
        pipe.to(device)
    except RuntimeError as exc:
        raise ModelError(_("could not move {source!r} to {device}: {first_line}").format(
                             source=source, device=device, first_line=first_line(exc))) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_folder(path: Path, torch_dtype: torch.dtype) -> Any:
    if not (path / "model_index.json").is_file():
        checkpoints = sorted(p.name for p in path.glob("*") if p.suffix in SINGLE_FILE_SUFFIXES)
        hint = _(" It holds {files}: point at one of those.").format(
            files=", ".join(checkpoints)) if checkpoints else ""
        raise ModelError(
            _("{path} is a folder but not a diffusers model (no model_index.json): point "
              "IMAGINE_MODEL at the folder that contains model_index.json.{hint}").format(
                path=path, hint=hint)
        )
    try:
        return _from_pretrained(str(path), torch_dtype)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(_("could not load the diffusers folder {path}: {first_line}").format(
                             path=path, first_line=first_line(exc))) from exc


def _load_hub(repo_id: str, torch_dtype: torch.dtype) -> Any:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return _from_pretrained(repo_id, torch_dtype)
    except GatedRepoError as exc:
        raise ModelError(
            _("{repo_id} is gated on the Hugging Face Hub: accept its licence on the model "
              "page and log in with `hf auth login` (or set HF_TOKEN), or ").format(
                repo_id=repo_id) + _(OFFLINE_HINT)
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelError(
            _("no model {repo_id!r} on the Hugging Face Hub (check the spelling), or ").format(
                repo_id=repo_id) + _(OFFLINE_HINT)
        ) from exc
    except OSError as exc:
        # Offline, unreachable and "no such file in the cache" all arrive as OSError.
        raise ModelError(
            _("could not load {repo_id!r}: it is not in the local Hugging Face cache and the "
              "Hub is unreachable (no network, or HF_HUB_OFFLINE=1); {hint}").format(
                repo_id=repo_id, hint=_(OFFLINE_HINT))
        ) from exc
    except Exception as exc:
        raise ModelError(_("could not load {repo_id!r} from the Hub: {first_line}").format(
                             repo_id=repo_id, first_line=first_line(exc))) from exc


def dtype_argument(torch_dtype: torch.dtype) -> dict[str, torch.dtype]:
    # diffusers renamed `torch_dtype` to `dtype` (and warns on the old name) in 0.36+;
    # older releases know only `torch_dtype`.
    from diffusers.utils import deprecation_utils

    name = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    return {name: torch_dtype}


def _from_pretrained(name: str, torch_dtype: torch.dtype) -> Any:
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    try:
        return AutoPipelineForText2Image.from_pretrained(name, **dtype_argument(torch_dtype))
    except ValueError as exc:
        # A pipeline class without a registered text-to-image task (a community or custom
        # pipeline): load it as it is.
        if "AutoPipeline" not in str(exc):
            raise
        return DiffusionPipeline.from_pretrained(name, **dtype_argument(torch_dtype))


def find_single_file_config(path: Path) -> Path | None:
    """The configs folder of checkpoint `path` by this module's convention, if there is one."""
    for candidate in (path.with_suffix(".config"), path.with_suffix("")):
        if (candidate / "model_index.json").is_file():
            return candidate
    return None


def _load_single_file(path: Path, torch_dtype: torch.dtype, config: str | None) -> Any:
    if not path.is_file():
        raise ModelError(_("model file {path} does not exist: check IMAGINE_MODEL").format(
                             path=path))
    config_dir = Path(config) if config else find_single_file_config(path)
    if config_dir is not None and not (config_dir / "model_index.json").is_file():
        raise ModelError(_("config folder {config_dir} for {path_name} has no model_index.json").format(
                             config_dir=config_dir, path_name=path.name))
    pipeline_class = _single_file_pipeline_class(path, config_dir)
    try:
        if config_dir is not None:
            return pipeline_class.from_single_file(
                str(path),
                config=str(config_dir),
                local_files_only=True,
                **dtype_argument(torch_dtype),
            )
        return pipeline_class.from_single_file(str(path), **dtype_argument(torch_dtype))
    except Exception as exc:
        if config_dir is None:
            raise ModelError(_missing_config_message(path, pipeline_class.__name__)) from exc
        raise ModelError(
            _("could not load {path_name} with the configs in {config_dir}: {first_line} (do "
              "the configs belong to the same base model as the checkpoint?)").format(
                path_name=path.name, config_dir=config_dir, first_line=first_line(exc))
        ) from exc


def _missing_config_message(path: Path, pipeline: str) -> str:
    base = (
        "stabilityai/stable-diffusion-xl-base-1.0"
        if "XL" in pipeline
        else "stable-diffusion-v1-5/stable-diffusion-v1-5"
    )
    target = path.with_suffix(".config")
    return (
        _("{path_name} is a single checkpoint file and its configs are missing: diffusers "
          "could not fetch them from the Hugging Face Hub (offline?). Put the configs of its "
          "base model in {target}/ — on a machine with internet run `hf download {base} "
          "--exclude '*.safetensors' '*.bin' '*.ckpt' '*.onnx*' '*.msgpack' --local-dir "
          "{target}` and copy the folder over — or use a diffusers folder, or {hint}").format(
            path_name=path.name, target=target, base=base, hint=_(OFFLINE_HINT))
    )


def _single_file_pipeline_class(path: Path, config_dir: Path | None) -> Any:
    import diffusers

    if config_dir is not None:
        index = json.loads((config_dir / "model_index.json").read_text(encoding="utf-8"))
        pipeline_class = getattr(diffusers, str(index.get("_class_name")), None)
        if pipeline_class is not None and hasattr(pipeline_class, "from_single_file"):
            return pipeline_class
    if path.suffix.lower() == ".safetensors" and _is_sdxl(path):
        return diffusers.StableDiffusionXLPipeline
    return diffusers.StableDiffusionPipeline


def _is_sdxl(path: Path) -> bool:
    # Only the header is read: SDXL checkpoints keep their second text encoder here.
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as checkpoint:
            return any(key.startswith("conditioner.embedders.1.") for key in checkpoint.keys())
    except Exception as exc:
        raise ModelError(_("{path} is not a readable .safetensors file: {first_line}").format(
                             path=path, first_line=first_line(exc))) from exc
