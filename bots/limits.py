"""The defaults and bounds every front end's prompt grammar applies, and how sizes snap to them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.png import model_label
from generator.request import CONTROL_KINDS, SAMPLERS
from settings import Settings
from settings.catalogue import ModelDefaults
from settings.errors import ConfigError

CFG_MAX = 30.0
# Wider than 4:1 gives broken compositions on SD-family models, so --ar stops there.
AR_MAX = 4
# A side above this is a typo rather than a size; it also keeps the float maths exact.
SIDE_MAX = 16384

def _setting_default(name: str) -> Any:
    """The Settings default, so Limits() and an empty environment agree."""
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class Limits:
    """The defaults and bounds the grammar applies; built from Settings at the edge."""

    default_size: int = _setting_default("default_size")
    size_multiple: int = _setting_default("size_multiple")
    default_steps: int = _setting_default("default_steps")
    default_cfg: float = _setting_default("default_cfg")
    default_sampler: str = _setting_default("default_sampler")
    max_steps: int = _setting_default("max_steps")
    max_pixels: int = _setting_default("max_pixels")
    max_images: int = _setting_default("max_images")
    max_prompt_length: int = _setting_default("max_prompt_length")
    models: tuple[str, ...] = ("default",)
    # (name, label) of each model: the label is what a PNG's `Model:` says (bots/recall.py).
    model_labels: tuple[tuple[str, str], ...] = ()
    # IMAGINE_LORA_DIR, listed when a prompt names a LoRA; None: LoRAs are off.
    lora_dir: Path | None = None
    # The ControlNet kinds IMAGINE_CONTROLNETS configures, in CONTROL_KINDS order.
    control_kinds: tuple[str, ...] = ()
    # (name, defaults) of each catalogue entry that sets some (IMAGINE_MODELS); the
    # negative prompt a model adds when the user gives no --no.
    model_defaults: tuple[tuple[str, ModelDefaults], ...] = ()
    default_negative: str = ""
    # IMAGINE_ENHANCE_MODEL is set: --enhance is allowed (#16).
    enhance: bool = False

    def __post_init__(self) -> None:
        # "default" (IMAGINE_MODEL) is always allowed, whatever the caller listed.
        models = tuple(self.models)
        if "default" not in models:
            models = ("default", *models)
        object.__setattr__(self, "models", models)
        _check_limits(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            default_size=settings.default_size,
            size_multiple=settings.size_multiple,
            # A default above the cap would hand the generator more steps than allowed.
            default_steps=min(settings.default_steps, settings.max_steps),
            default_cfg=settings.default_cfg,
            default_sampler=settings.default_sampler,
            max_steps=settings.max_steps,
            max_pixels=settings.max_pixels,
            max_images=settings.max_images,
            max_prompt_length=settings.max_prompt_length,
            models=tuple(settings.model_sources),
            model_labels=tuple((name, model_label(source))
                               for name, source in settings.model_sources.items()),
            lora_dir=settings.lora_dir,
            control_kinds=tuple(kind for kind in CONTROL_KINDS if kind in settings.controlnets),
            model_defaults=tuple((name, entry.defaults) for name, entry
                                 in settings.catalogue.items() if entry.defaults.given()),
            enhance=bool(settings.enhance_model),
        )

    def defaults_for(self, model: str) -> ModelDefaults:
        """The catalogue's defaults of `model` (empty when it sets none)."""
        return dict(self.model_defaults).get(model, ModelDefaults())

    def for_model(self, model: str) -> Limits:
        """These limits with `model`'s defaults in place of the server's: what a prompt
        for that model gets for each flag it leaves out (`--model turbo` → 2 steps)."""
        given = self.defaults_for(model)
        if not given.given():
            return self
        return dataclasses.replace(
            self, default_steps=given.steps or self.default_steps,
            default_cfg=self.default_cfg if given.cfg is None else given.cfg,
            default_sampler=given.sampler or self.default_sampler,
            default_size=given.size or self.default_size,
            default_negative=self.default_negative if given.negative is None
            else given.negative)

    @property
    def default_dims(self) -> tuple[int, int]:
        """The size used when neither --ar nor --size is given."""
        return fit_size(self.default_size, self.default_size, self)


def _check_limits(limits: Limits) -> None:
    """Refuse limits under which some prompt could produce an invalid ImageRequest."""
    problems = []
    if limits.size_multiple < 8:
        problems.append("size_multiple must be at least 8")
    if limits.max_pixels < limits.size_multiple**2:
        problems.append("max_pixels must hold at least one size_multiple square")
    if limits.default_size < 1:
        problems.append("default_size must be positive")
    if min(limits.default_steps, limits.max_steps, limits.max_images) < 1:
        problems.append("default_steps, max_steps and max_images must be at least 1")
    if limits.max_prompt_length < 1:
        problems.append("max_prompt_length must be at least 1")
    if not 0.0 <= limits.default_cfg <= CFG_MAX:
        problems.append(f"default_cfg must be from 0 to {CFG_MAX:g}")
    if limits.default_sampler not in SAMPLERS:
        problems.append(f"default_sampler (IMAGINE_DEFAULT_SAMPLER) must be one of {', '.join(SAMPLERS)}")
    problems += _model_default_problems(limits)
    if problems:
        raise ConfigError("Invalid grammar limits: " + "; ".join(problems))


def _model_default_problems(limits: Limits) -> list[str]:
    """What is wrong with a catalogue entry's defaults, named as the operator wrote it."""
    problems = []
    for name, given in limits.model_defaults:
        where = f'IMAGINE_MODELS["{name}"].defaults'
        if given.sampler is not None and given.sampler not in SAMPLERS:
            problems.append(f"{where}.sampler must be one of {', '.join(SAMPLERS)}")
        if given.steps is not None and given.steps > limits.max_steps:
            problems.append(f"{where}.steps must be at most IMAGINE_MAX_STEPS "
                            f"({limits.max_steps})")
    return problems


def fit_size(width: float, height: float, limits: Limits) -> tuple[int, int]:
    """Snap a size to the multiple, then shrink it under max_pixels; idempotent."""
    step = limits.size_multiple
    w = max(step, math.floor(width / step + 0.5) * step)
    h = max(step, math.floor(height / step + 0.5) * step)
    if w * h <= limits.max_pixels:
        return w, h
    # Scale both sides by the same factor and round down, so the cap holds after snapping.
    scale = math.sqrt(limits.max_pixels / (w * h))
    w = max(step, math.floor(w * scale / step) * step)
    h = max(step, math.floor(h * scale / step) * step)
    while w * h > limits.max_pixels:  # float rounding can leave one step too many
        if w >= h:
            w -= step
        else:
            h -= step
    return w, h


def size_for_ratio(ratio: tuple[int, int], limits: Limits) -> tuple[int, int]:
    """--ar keeps the default area and changes only the shape."""
    area = float(limits.default_size) ** 2
    width = math.sqrt(area * ratio[0] / ratio[1])
    return fit_size(width, area / width, limits)
