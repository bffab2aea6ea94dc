"""What this deployment draws with: its models (with their catalogue entries), LoRAs,
embeddings and ControlNets, listed alike by every front end: `/imagine models` on Slack,
`/models` on Discord and GET /api/v1/models.

Built from the settings and the folders on each call, so a LoRA dropped into
IMAGINE_LORA_DIR is listed at once. Light: no torch, no model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.library import embedding_files, lora_files
from settings import Settings
from settings.i18n import _

# A LoRA's trigger words may sit beside it in `<name>.txt` (comma or line separated), as
# civitai downloads often do; a sidecar is a line of words, so only its start is read.
SIDECAR_BYTES = 2000
SIDECAR_WORDS = 20
# ControlNet kinds whose map is computed from any photo even without an annotator.
COMPUTED_MAPS = ("canny",)


@dataclass(frozen=True)
class ModelItem:
    name: str
    family: str | None
    description: str
    defaults: dict[str, Any]  # only what the entry sets; the rest are the server's defaults
    triggers: tuple[str, ...]


@dataclass(frozen=True)
class FileItem:
    """A LoRA or an embedding: its name (the file's stem) and its trigger words."""

    name: str
    triggers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ControlItem:
    name: str  # the kind, as --cn takes it
    families: tuple[str, ...]  # base-model families it has models for; () when one for all
    input: str  # "photo": a map is computed from the image; "map": the image is the map


@dataclass(frozen=True)
class Listing:
    models: tuple[ModelItem, ...]
    loras: tuple[FileItem, ...]
    embeddings: tuple[FileItem, ...]
    controlnets: tuple[ControlItem, ...]

    def as_json(self) -> dict[str, Any]:
        """The body of GET /api/v1/models."""
        return {
            "models": [{"name": m.name, "family": m.family, "defaults": m.defaults,
                        "description": m.description, "triggers": list(m.triggers)}
                       for m in self.models],
            "loras": [_file_json(item) for item in self.loras],
            "embeddings": [_file_json(item) for item in self.embeddings],
            "controlnets": [{"name": c.name, "families": list(c.families), "input": c.input}
                            for c in self.controlnets],
        }


def _file_json(item: FileItem) -> dict[str, Any]:
    return {"name": item.name, "triggers": list(item.triggers)} if item.triggers \
        else {"name": item.name}


def model_items(settings: Settings) -> tuple[ModelItem, ...]:
    """The models alone (no folder is read), `default` first."""
    return tuple(ModelItem(name, entry.family, entry.description, entry.defaults.given(),
                           entry.triggers) for name, entry in settings.catalogue.items())


def listing(settings: Settings) -> Listing:
    """Everything a user may name in a prompt on this deployment, `default` model first."""
    models = model_items(settings)
    loras = tuple(FileItem(name, _sidecar_triggers(path))
                  for name, path in lora_files(settings.lora_dir).items())
    embeddings = tuple(FileItem(name) for name in embedding_files(settings.embeddings_dir))
    controlnets = tuple(
        ControlItem(kind, tuple(source) if isinstance(source, dict) else (),
                    "photo" if kind in COMPUTED_MAPS or kind in settings.annotators else "map")
        for kind, source in sorted(settings.controlnets.items()))
    return Listing(models, loras, embeddings, controlnets)


def _sidecar_triggers(path: Path) -> tuple[str, ...]:
    sidecar = path.with_suffix(".txt")
    try:
        with sidecar.open(encoding="utf-8", errors="replace") as file:
            text = file.read(SIDECAR_BYTES)
    except OSError:  # none, or unreadable: a LoRA works without trigger words
        return ()
    words = (word.strip() for word in re.split(r"[,\n]", text))
    return tuple(word for word in words if word)[:SIDECAR_WORDS]


# ---------------------------------------------------------------------------------------
# As chat text


def _defaults_text(defaults: dict[str, Any]) -> str:
    shown = {"steps": _("{value} steps"), "cfg": _("cfg {value:g}"),
             "sampler": _("sampler {value}"), "size": "{value}x{value}",
             "negative": "--no {value}"}
    return ", ".join(shown[key].format(value=value) for key, value in defaults.items())


def _model_line(item: ModelItem, code: Callable[[str], str],
                escape: Callable[[str], str]) -> str:
    head = code(item.name) + (f" ({item.family})" if item.family else "")
    parts = [escape(item.description)] if item.description else []
    if item.defaults:
        parts.append(escape(_defaults_text(item.defaults)))
    if item.triggers:
        parts.append(_("triggers: {words}").format(
            words=", ".join(code(word) for word in item.triggers)))
    return f"• {head}" + (f": {' · '.join(parts)}" if parts else "")


def _file_line(item: FileItem, code: Callable[[str], str]) -> str:
    triggers = _(": triggers {words}").format(
        words=", ".join(code(word) for word in item.triggers)) \
        if item.triggers else ""
    return f"• {code(item.name)}{triggers}"


def _control_line(item: ControlItem, code: Callable[[str], str]) -> str:
    families = f" ({', '.join(item.families)})" if item.families else ""
    what = (_("a map is computed from your image") if item.input == "photo"
            else _("your image is taken as the ready map"))
    return f"• {code(item.name)}{families}: {what}"


def listing_text(items: Listing, *, limit: int, bold: str = "*",
                 escape: Callable[[str], str] = str) -> str:
    """The listing as chat markup at most `limit` characters long: Slack's mrkdwn
    (`bold="*"`) or Discord's markdown (`bold="**"`); a section too long for the limit
    ends with "… and N more". `escape` makes configured text inert for the chat."""
    def code(text: str) -> str:
        return f"`{escape(text.replace('`', chr(39)))}`"

    sections = [
        (_("{bold}Models{bold}: `--model NAME`").format(bold=bold),
         [_model_line(m, code, escape) for m in items.models]),
        (_("{bold}LoRAs{bold}: `<lora:NAME:0.8>` in the prompt, or `--lora NAME:0.8`").format(
            bold=bold),
         [_file_line(f, code) for f in items.loras]),
        (_("{bold}Embeddings{bold}: the name as a word of the prompt or of `--no`").format(
            bold=bold),
         [_file_line(f, code) for f in items.embeddings]),
        (_("{bold}ControlNets{bold}: `--cn KIND:0.8` with an image").format(bold=bold),
         [_control_line(c, code) for c in items.controlnets]),
    ]
    return _fit(sections, limit)


def _more(count: int) -> str:
    return _("… and {count} more").format(count=count)


def _fit(sections: Sequence[tuple[str, list[str]]], limit: int) -> str:
    """The sections in order; when they do not all fit, lines are taken a round at a time
    (the first of each section, then the second, …) so every section shows some, and each
    section cut short ends with "… and N more"."""
    sections = [(header, lines or ["• " + _("none")]) for header, lines in sections]
    full = "\n".join(line for header, lines in sections for line in (header, *lines))
    if len(full) <= limit:
        return full
    # Headers and a note per section are kept room for first.
    used = sum(len(header) + len(_more(len(lines))) + 2 for header, lines in sections)
    kept = [0] * len(sections)
    open_ = [True] * len(sections)
    while any(open_):
        for index, (_header, lines) in enumerate(sections):
            if not open_[index]:
                continue
            if kept[index] == len(lines) or used + len(lines[kept[index]]) + 1 > limit:
                open_[index] = False  # a section stays one run of lines from its start
                continue
            used += len(lines[kept[index]]) + 1
            kept[index] += 1
    out: list[str] = []
    for (header, lines), count in zip(sections, kept, strict=True):
        out += [header, *lines[:count]]
        if count < len(lines):
            out.append(_more(len(lines) - count))
    return "\n".join(out)
