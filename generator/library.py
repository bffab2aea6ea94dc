"""The LoRA and embedding files an operator dropped into IMAGINE_LORA_DIR / IMAGINE_EMBEDDINGS_DIR.

Light on purpose (no torch): front ends list these folders to check names a user typed,
the worker to find the file behind a name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LORA_SUFFIXES: tuple[str, ...] = (".safetensors",)
# A1111 embeddings come as .pt or .safetensors, diffusers' own as .bin or .safetensors.
EMBEDDING_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".bin")
# How alike two names must be (difflib's ratio) before one is suggested for the other.
CLOSE_CUTOFF = 0.5


def lora_files(directory: Path | None) -> dict[str, Path]:
    """File stem → LoRA file in `directory`, sorted by name; {} when there is no folder."""
    return _files(directory, LORA_SUFFIXES)


def embedding_files(directory: Path | None) -> dict[str, Path]:
    """File stem → textual-inversion embedding file in `directory`, sorted by name."""
    return _files(directory, EMBEDDING_SUFFIXES)


def closest(name: str, names: Iterable[str], n: int = 3) -> list[str]:
    """Up to `n` of `names` that look most like `name`, ignoring case; best first."""
    by_folded: dict[str, str] = {}
    for known in names:
        by_folded.setdefault(known.casefold(), known)
    near = difflib.get_close_matches(name.casefold(), list(by_folded), n=n, cutoff=CLOSE_CUTOFF)
    return [by_folded[folded] for folded in near]


def model_label(pipe: Any) -> str:
    """A loaded pipeline's model as messages name it: its folder or file name."""
    source = str(getattr(pipe, "name_or_path", "") or "")
    return Path(source).stem if source else type(pipe).__name__



def _files(directory: Path | None, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if directory is None:
        return {}
    folder = Path(directory)
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    # Sorted by file name, so that of two files with one stem (x.pt, x.safetensors) the
    # choice is the same on every machine: the preferred suffix wins.
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        suffix = path.suffix.lower()
        if suffix not in suffixes or path.name.startswith(".") or not path.is_file():
            continue
        current = found.get(path.stem)
        if current is None or suffixes.index(suffix) < suffixes.index(current.suffix.lower()):
            found[path.stem] = path
    return dict(sorted(found.items()))
