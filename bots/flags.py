"""The prompt grammar's flags: each flag's name, what a valid value looks like, and its
validator (raw text → value, or None when the text is not a valid value).

`bots.grammar` scans text into flags and builds the request; parse() and
request_from_fields() both go through these validators, so each rule lives once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bots.errors import PromptError
from bots.limits import AR_MAX, CFG_MAX, SIDE_MAX, Limits, fit_size
from bots.model_flags import control_wants, convert_control, convert_lora, lora_wants
from generator.request import IMAGE_PROMPT_STRENGTH, SAMPLERS, SEED_MAX
from settings.i18n import _

IW_MAX = 3.0
_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RATIO = re.compile(r"([0-9]+):([0-9]+)")
_SIZE = re.compile(r"([0-9]+)(?:[xX\u00d7]([0-9]+))?")  # × is what phones offer for "x"


def _whole(text: str, low: int, high: int) -> int | None:
    if not _DIGITS.fullmatch(text):
        return None
    try:
        number = int(text)
    except ValueError:  # more digits than Python converts: far out of range anyway
        return None
    return number if low <= number <= high else None


def _convert_ar(text: str, limits: Limits) -> tuple[int, int] | None:
    match = _RATIO.fullmatch(text)
    if not match:
        return None
    w, h = (_whole(part, 1, SIDE_MAX) for part in match.groups())
    if w is None or h is None or w > AR_MAX * h or h > AR_MAX * w:
        return None
    return w, h


def _convert_size(text: str, limits: Limits) -> tuple[int, int] | None:
    match = _SIZE.fullmatch(text)
    if not match:
        return None
    w = _whole(match.group(1), 1, SIDE_MAX)
    h = _whole(match.group(2) or match.group(1), 1, SIDE_MAX)
    return None if w is None or h is None else fit_size(w, h, limits)


def _convert_seed(text: str, limits: Limits) -> int | None:
    return _whole(text, 0, SEED_MAX)


def _convert_steps(text: str, limits: Limits) -> int | None:
    return _whole(text, 1, limits.max_steps)


def _convert_n(text: str, limits: Limits) -> int | None:
    return _whole(text, 1, limits.max_images)


def _convert_cfg(text: str, limits: Limits) -> float | None:
    if not _DECIMAL.fullmatch(text):  # float() alone would accept nan, inf and 1_0
        return None
    value = float(text)
    return value if 0.0 <= value <= CFG_MAX else None


def _convert_strength(text: str, limits: Limits) -> float | None:
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if 0.0 < value <= 1.0 else None


def _convert_iw(text: str, limits: Limits) -> float | None:
    """Midjourney's image weight (more weight: closer to the image) as a strength:
    IMAGE_PROMPT_STRENGTH ** iw, so --iw 1 is the default, 0 ignores the image, 2 is 0.36."""
    if not _DECIMAL.fullmatch(text) or not 0.0 <= float(text) <= IW_MAX:
        return None
    return round(IMAGE_PROMPT_STRENGTH ** float(text), 4)


def _convert_no(text: str, limits: Limits) -> str | None:
    # Commas at the edges come from "--no text, --no blur"; joining adds its own.
    return " ".join(text.split()).strip(" ,") or None


def _convert_model(text: str, limits: Limits) -> str | None:
    if text in limits.models:
        return text
    folded = [name for name in limits.models if name.casefold() == text.casefold()]
    return folded[0] if len(folded) == 1 else None


def _convert_sampler(text: str, limits: Limits) -> str | None:
    return text.lower() if text.lower() in SAMPLERS else None


_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off"})


def _convert_switch(text: str, limits: Limits) -> bool | None:
    """A switch given alone is on; as a field (raw=1, enhance=true) it may also be off."""
    word = text.strip().lower()
    return True if word in _YES else False if word in _NO else None


def _convert_enhance(text: str, limits: Limits) -> bool | None:
    on = _convert_switch(text, limits)
    if on and not limits.enhance:
        raise PromptError(_("--enhance is not available: this server has no prompt "
                            "enhancement model (IMAGINE_ENHANCE_MODEL). Remove --enhance "
                            "and describe the image in more detail yourself."))
    return on


def _whole_wants(low: int, high: int) -> str:
    return _("a whole number from {low} to {high}").format(low=low, high=high)


def _one_of(names: tuple[str, ...]) -> str:
    return _("one of: {names}").format(names=", ".join(names))


@dataclass(frozen=True)
class Flag:
    name: str
    wants: Callable[[Limits], str]  # what a valid value looks like, for both error kinds
    convert: Callable[[str, Limits], Any]
    # A switch takes no value (--raw); as a field it reads 1/0, true/false.
    switch: bool = False


FLAG_LIST: tuple[Flag, ...] = (
    Flag("ar", lambda lim: _("a ratio W:H from 1:4 to 4:1, e.g. 16:9"), _convert_ar),
    Flag(
        "size",
        lambda lim: _("WxH or N for a square (sides 1 to {max}), e.g. 768x512").format(
            max=SIDE_MAX),
        _convert_size,
    ),
    Flag("seed", lambda lim: _whole_wants(0, SEED_MAX), _convert_seed),
    Flag("steps", lambda lim: _whole_wants(1, lim.max_steps), _convert_steps),
    Flag("cfg", lambda lim: _("a number from 0 to {max}, e.g. 7.5").format(max=f"{CFG_MAX:g}"),
         _convert_cfg),
    Flag("no", lambda lim: _("the things to leave out, e.g. --no text, blur"), _convert_no),
    Flag("n", lambda lim: _whole_wants(1, lim.max_images), _convert_n),
    Flag("model", lambda lim: _one_of(lim.models), _convert_model),
    Flag("sampler", lambda lim: _one_of(SAMPLERS), _convert_sampler),
    Flag("strength", lambda lim: _("a number above 0 and at most 1 (how far from the image; "
          "default {default})").format(default=f"{IMAGE_PROMPT_STRENGTH:g}"), _convert_strength),
    Flag("iw", lambda lim: _("a number from 0 to {max} (image weight: more is closer to the "
          "image; default 1)").format(max=f"{IW_MAX:g}"), _convert_iw),
    Flag("lora", lora_wants, convert_lora),
    Flag("cn", control_wants, convert_control),
    # #16: --raw draws the prompt as written (no translation); --enhance has a language
    # model expand it first.
    Flag("raw", lambda lim: _("on or off (1 or 0)"), _convert_switch, switch=True),
    Flag("enhance", lambda lim: _("on or off (1 or 0)"), _convert_enhance, switch=True),
)
ALIASES = {"aspect": "ar", "negative": "no", "count": "n", "guidance": "cfg",
           "controlnet": "cn"}
FLAGS: dict[str, Flag] = {flag.name: flag for flag in FLAG_LIST}
FLAGS.update({alias: FLAGS[name] for alias, name in ALIASES.items()})
FLAG_NAMES: tuple[str, ...] = tuple(flag.name for flag in FLAG_LIST)
FIELD_NAMES: tuple[str, ...] = ("prompt", *FLAG_NAMES)
