"""Sampler names (as users type them) → diffusers schedulers built from a model's own config.

Every scheduler is made with `Scheduler.from_config(base_config, **overrides)`, so the
model's noise schedule (betas, prediction type, timestep spacing) is kept and only the
sampling algorithm changes. The overrides are explicit where two samplers share a class,
so nothing leaks from whichever scheduler the model happened to ship with.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from functools import cache
from typing import Any

from generator.errors import ModelError
from generator.request import SAMPLER_LABELS
from settings.i18n import _

log = logging.getLogger(__name__)

# name → (diffusers class, overrides). Labels and their meaning follow diffusers' table of
# A1111 equivalents.
_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {"use_karras_sigmas": False}),
    "dpm++2m": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "dpm++2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++sde": ("DPMSolverSDEScheduler", {"use_karras_sigmas": False}),
    "ddim": ("DDIMScheduler", {}),
    # PNDM's Runge-Kutta warm-up steps do not fit in a few-step budget; SD 1.x skips them too.
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": ("LMSDiscreteScheduler", {"use_karras_sigmas": False}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}

# DPMSolverSDEScheduler needs the optional `torchsde` package. Without it, DPM++ with the
# SDE variant of the multistep solver is the closest sampler diffusers has built in; the
# PNG metadata then names what really ran (see `sampler_label`).
_SDE_FALLBACK: tuple[str, dict[str, Any]] = (
    "DPMSolverMultistepScheduler",
    {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
)
_SDE_FALLBACK_LABEL = "DPM++ 2M SDE"


@cache
def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _spec(name: str) -> tuple[str, dict[str, Any]]:
    if name not in _SCHEDULERS:
        raise ModelError(_("unknown sampler {name!r}: use one of {join}").format(
                             name=name, join=', '.join(SAMPLER_LABELS)))
    if name == "dpm++sde" and not _has("torchsde"):
        return _SDE_FALLBACK
    if name == "lms" and not _has("scipy"):
        raise ModelError(_("the lms sampler needs scipy on the GPU worker: `pip install scipy`"))
    return _SCHEDULERS[name]


def sampler_label(name: str) -> str:
    """How A1111-compatible tools spell the sampler that `make_scheduler(name)` really builds."""
    if name == "dpm++sde" and _spec(name) is _SDE_FALLBACK:
        return _SDE_FALLBACK_LABEL
    return SAMPLER_LABELS[name]


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> Any:
    """A fresh scheduler for sampler `name`, with the noise schedule of `base_config`."""
    import diffusers

    class_name, overrides = _spec(name)
    if name == "dpm++sde" and class_name != "DPMSolverSDEScheduler":
        log.warning("torchsde is not installed: dpm++sde runs as %s", _SDE_FALLBACK_LABEL)
    scheduler_class = getattr(diffusers, class_name)
    return scheduler_class.from_config(dict(base_config), **overrides)


class SchedulerCache:
    """The schedulers of one model, each built once, all from the model's original config.

    Keep one per loaded model and take `base_config` from the scheduler it shipped with:
    building from a scheduler already swapped in would carry its options (Karras sigmas,
    SDE variants) into every later sampler.
    """

    def __init__(self, base_config: Mapping[str, Any]) -> None:
        self._base_config = dict(base_config)
        self._built: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        scheduler = self._built.get(name)
        if scheduler is None:
            scheduler = self._built[name] = make_scheduler(name, self._base_config)
        return scheduler
