"""The grammar's flags for what a job adds to its model: LoRAs (`--lora name:0.8` and the
`<lora:name:0.8>` tags A1111 and civitai prompts carry) and ControlNet (`--cn canny:0.8`).

A LoRA name must be a file in IMAGINE_LORA_DIR. The folder is listed when a prompt names a
LoRA (kept for a few seconds), so a file dropped in works without a restart.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bots.errors import PromptError
from bots.limits import Limits
from generator.library import closest, lora_files
from generator.request import (
    CONTROL_KINDS,
    CONTROL_WEIGHT_MAX,
    LORA_WEIGHT_MAX,
    LORA_WEIGHT_MIN,
    LoraUse,
)
from settings.i18n import _

# How long a listing of the LoRA folder is trusted: long enough that a burst of prompts
# lists it once, short enough that a new file is there by the time its owner tries it.
LISTING_SECONDS = 3.0
# A folder with more LoRAs than this is not listed in full in an error message.
LISTED_MAX = 12
# A1111's tag, as pasted from civitai: <lora:name> or <lora:name:weight>, with the comma
# that usually follows it (taken away with the tag, so no ", ," is left behind).
LORA_TAG = re.compile(r"\s*<lora:([^:<>]+)(?::([^<>]*))?>\s*,?", re.I)
_SIGNED = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

_listings: dict[Path, tuple[float, dict[str, Path]]] = {}
_listings_lock = threading.Lock()


@dataclass(frozen=True)
class Control:
    """A --cn flag: the ControlNet kind and its weight (conditioning scale)."""

    kind: str
    weight: float = 1.0


def available_loras(directory: Path | None) -> dict[str, Path]:
    """The LoRAs of `directory` (name → file), listed at most every LISTING_SECONDS."""
    if directory is None:
        return {}
    now = time.monotonic()
    with _listings_lock:
        cached = _listings.get(directory)
        if cached is not None and now - cached[0] < LISTING_SECONDS:
            return cached[1]
    files = lora_files(directory)
    with _listings_lock:
        _listings[directory] = (now, files)
    return files


def lora_tags(text: str) -> tuple[str, list[str]]:
    """(the text without its <lora:…> tags, each tag's inside as `name[:weight]`)."""
    found: list[str] = []

    def take(match: re.Match[str]) -> str:
        name, weight = match.group(1).strip(), match.group(2)
        found.append(name if weight is None else f"{name}:{weight.strip()}")
        return " "

    rest = LORA_TAG.sub(take, text)
    if found:  # a tag at the end leaves the comma before it dangling
        rest = " ".join(rest.split()).strip(" ,")
    return rest, found


def _split_weight(text: str) -> tuple[str, str | None]:
    name, colon, weight = text.strip().rpartition(":")
    return (name.strip(), weight.strip()) if colon else (text.strip(), None)


def _weight(raw: str | None, low: float, high: float) -> float | None:
    if raw is None or raw == "":
        return 1.0
    if not _SIGNED.fullmatch(raw):
        return None
    value = float(raw)
    return value if low <= value <= high else None


def lora_name(name: str, limits: Limits) -> str:
    """The LoRA file `name` stands for (exact, else the one equal but for case)."""
    if limits.lora_dir is None:
        raise PromptError(_("LoRAs are not enabled on this server (IMAGINE_LORA_DIR): leave "
                            "out --lora and <lora:…> tags ({name} was asked for).").format(
                                name=repr(_cut(name))))
    names = available_loras(limits.lora_dir)
    if name in names:
        return name
    folded = [known for known in names if known.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    near = closest(name, names)
    hint = _(" Did you mean {name}?").format(name=", ".join(near)) if near else ""
    listed = sorted(names)
    if not listed:
        shown = _(" (there are no LoRAs in IMAGINE_LORA_DIR yet)")
    elif len(listed) <= LISTED_MAX:
        shown = _(" (LoRAs: {names})").format(names=", ".join(listed))
    else:
        shown = _(" ({count} LoRAs; the closest are suggested)").format(count=len(listed))
    raise PromptError(_("Unknown LoRA {name}.").format(name=repr(_cut(name))) + hint + shown)


def convert_lora(text: str, limits: Limits) -> LoraUse | None:
    """`name` or `name:weight` → LoraUse; None for a bad weight, PromptError for a name that
    is not a LoRA here."""
    name, raw = _split_weight(text)
    weight = _weight(raw, LORA_WEIGHT_MIN, LORA_WEIGHT_MAX)
    if not name or weight is None:
        return None
    return LoraUse(name=lora_name(name, limits), weight=weight)


def convert_control(text: str, limits: Limits) -> Control | None:
    if not limits.control_kinds:
        raise PromptError(_("ControlNet is not enabled on this server (IMAGINE_CONTROLNETS): "
                            "leave out --cn."))
    kind, raw = _split_weight(text)
    weight = _weight(raw, 0.0, CONTROL_WEIGHT_MAX)
    kind = kind.lower()
    if weight is None or kind not in CONTROL_KINDS or kind not in limits.control_kinds:
        return None
    return Control(kind, weight)


def lora_wants(limits: Limits) -> str:
    return _("a LoRA name with an optional weight from {low} to {high}, e.g. --lora "
             "my-style:0.8").format(low=f"{LORA_WEIGHT_MIN:g}", high=f"{LORA_WEIGHT_MAX:g}")


def control_wants(limits: Limits) -> str:
    kinds = limits.control_kinds or CONTROL_KINDS
    return _("a ControlNet kind ({kinds}) with an optional weight from 0 to {high}, e.g. "
             "--cn {kind}:0.8").format(kinds=", ".join(kinds), high=f"{CONTROL_WEIGHT_MAX:g}",
                                       kind=kinds[0])


def needs_control_image(control: Control) -> PromptError:
    return PromptError(_("--cn {kind} needs a control image: attach one (or put its URL "
                         "first; REST: control_image, CLI: --control FILE).").format(
                             kind=control.kind))


def format_lora(lora: LoraUse) -> str:
    return lora.name if lora.weight == 1.0 else f"{lora.name}:{_number(lora.weight)}"


def format_control(control: Control) -> str:
    return control.kind if control.weight == 1.0 else f"{control.kind}:{_number(control.weight)}"


def _number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _cut(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"
