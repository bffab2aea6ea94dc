"""Recall of what a PNG adds to its model: the <lora:name:weight> tags of its prompt (A1111's
convention, which generator/png.py follows) and our ControlNet entries, read back within
this server's LoRAs and ControlNets, each change said in a note (bots/recall.py)."""

from __future__ import annotations

from collections.abc import Mapping

from bots.errors import PromptError
from bots.limits import Limits
from bots.model_flags import Control, format_control, lora_name, lora_tags
from generator import png
from generator.request import (
    CONTROL_WEIGHT_MAX,
    LORA_WEIGHT_MAX,
    LORA_WEIGHT_MIN,
    ImageRequest,
    LoraUse,
)
from settings.i18n import _
from tasks.core.storage import Storage

# How much of a recorded value a note repeats.
_SHOWN = 40


def shown(value: str) -> str:
    """A recorded value quoted for a note, cut to a readable length."""
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "…")


def recalled_loras(prompt: str, limits: Limits, notes: list[str]
                   ) -> tuple[str, tuple[LoraUse, ...]]:
    """(the prompt without its <lora:…> tags, the LoRAs of those this server has)."""
    text, tags = lora_tags(prompt)
    loras: list[LoraUse] = []
    for tag in tags:
        name, colon, raw = tag.rpartition(":")
        if not colon:
            name, raw = tag, "1"
        try:
            known = lora_name(name, limits)
        except PromptError:
            where = _("LoRAs are off here") if limits.lora_dir is None else _("not in IMAGINE_LORA_DIR")
            notes.append(_("The LoRA {shown} is not on this server ({where}): the image is "
                           "drawn without it.").format(shown=shown(name), where=where))
            continue
        if any(lora.name == known for lora in loras):
            notes.append(_("The LoRA {known} is named twice: its first weight is used.").format(
                             known=known))
            continue
        loras.append(LoraUse(name=known, weight=_weight(raw, known, notes)))
    return text, tuple(loras)


def _weight(raw: str, name: str, notes: list[str]) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value:
        notes.append(_("The weight {shown} of LoRA {name} is not a number: 1 used.").format(
                         shown=shown(raw), name=name))
        return 1.0
    if not LORA_WEIGHT_MIN <= value <= LORA_WEIGHT_MAX:
        clamped = min(max(value, LORA_WEIGHT_MIN), LORA_WEIGHT_MAX)
        notes.append(_("The weight {value:g} of LoRA {name} is outside {least:g} to "
                       "{most:g}: {clamped:g} used.").format(
                         value=value, name=name, least=LORA_WEIGHT_MIN,
                         most=LORA_WEIGHT_MAX, clamped=clamped))
        return clamped
    return value


def recalled_control(entries: Mapping[str, str], mode: str, limits: Limits,
                     notes: list[str]) -> dict[str, object]:
    """The ControlNet fields of a PNG's settings entries, or none (with a note saying why)
    when this server cannot repeat it."""
    kind = entries.get(png.CONTROLNET, "").strip().lower()
    if not kind:
        return {}
    image = entries.get(png.CONTROL_IMAGE, "").strip()
    problem = None
    if kind not in limits.control_kinds:
        problem = _("this server has no {shown} ControlNet (IMAGINE_CONTROLNETS)").format(
                      shown=shown(kind))
    elif not Storage.is_valid_name(image):
        problem = _("it does not name its control image")
    elif mode not in ("txt2img", "img2img"):
        problem = _("the operation {mode} takes no control image").format(mode=mode)
    if problem is not None:
        notes.append(_("This image was guided by a ControlNet, but {problem}: recalled without "
                       "it.").format(problem=problem))
        return {}
    raw = entries.get(png.CONTROL_WEIGHT, "1").strip()
    try:
        weight = float(raw)
    except ValueError:
        weight = -1.0
    if not 0.0 <= weight <= CONTROL_WEIGHT_MAX:  # NaN too
        notes.append(_("Control weight {shown} is not from 0 to {most:g}: 1 used.").format(
                         shown=shown(raw), most=CONTROL_WEIGHT_MAX))
        weight = 1.0
    return {"control": kind, "control_image": image, "control_weight": weight}


def control_line(request: ImageRequest) -> str | None:
    """The line a recall adds for a ControlNet (its image cannot be written as a flag)."""
    if request.control is None:
        return None
    control = format_control(Control(request.control, request.control_weight))
    return _("ControlNet: --cn {control} with control image {control_image}").format(
               control=control, control_image=request.control_image)


def without_control(request: ImageRequest) -> ImageRequest:
    return ImageRequest.model_validate({**request.model_dump(), "control": None,
                                        "control_image": None, "control_weight": 1.0})
