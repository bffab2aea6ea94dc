"""The one prompt grammar: free text plus Midjourney-style flags, for every front end.

`parse("a red fox --ar 16:9 --seed 7 --no text", limits)` gives an `ImageRequest`;
`format_request` writes a request back as text that parses to the same request. Front ends
with separate fields (web query strings, Discord options) call `request_from_fields`, which
runs the same per-flag validators. Every error is a one-line `PromptError` a user can act on.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bots.errors import PromptError
from bots.limits import AR_MAX, CFG_MAX, SIDE_MAX, Limits, fit_size, size_for_ratio
from generator.request import SAMPLERS, SEED_MAX, ImageRequest

# How much of a bad value an error message repeats: enough to recognise, never a wall.
_SHOWN = 40

USAGE = (
    "Usage: PROMPT [flags], e.g. `a red fox in snow --ar 16:9 --seed 7 --no text`\n"
    "Size: --ar W:H (1:4 to 4:1) or --size WxH · Images: --n N · Seed: --seed N\n"
    "Sampling: --steps N, --cfg X (0-30), --sampler NAME, --model NAME\n"
    "Leave things out with --no TEXT; --flag=value works too."
)


# ---------------------------------------------------------------------------------------
# Per-flag validators: raw text → value, or None when the text is not a valid value.
# parse() and request_from_fields() both go through these, so each rule lives once.

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


@dataclass(frozen=True)
class _Flag:
    name: str
    wants: Callable[[Limits], str]  # what a valid value looks like, for both error kinds
    convert: Callable[[str, Limits], Any]


_FLAG_LIST: tuple[_Flag, ...] = (
    _Flag("ar", lambda lim: "a ratio W:H from 1:4 to 4:1, e.g. 16:9", _convert_ar),
    _Flag(
        "size",
        lambda lim: f"WxH or N for a square (sides 1 to {SIDE_MAX}), e.g. 768x512",
        _convert_size,
    ),
    _Flag("seed", lambda lim: f"a whole number from 0 to {SEED_MAX}", _convert_seed),
    _Flag("steps", lambda lim: f"a whole number from 1 to {lim.max_steps}", _convert_steps),
    _Flag("cfg", lambda lim: f"a number from 0 to {CFG_MAX:g}, e.g. 7.5", _convert_cfg),
    _Flag("no", lambda lim: "the things to leave out, e.g. --no text, blur", _convert_no),
    _Flag("n", lambda lim: f"a whole number from 1 to {lim.max_images}", _convert_n),
    _Flag("model", lambda lim: f"one of: {', '.join(lim.models)}", _convert_model),
    _Flag("sampler", lambda lim: f"one of: {', '.join(SAMPLERS)}", _convert_sampler),
)
_ALIASES = {"aspect": "ar", "negative": "no", "count": "n", "guidance": "cfg"}
_FLAGS: dict[str, _Flag] = {flag.name: flag for flag in _FLAG_LIST}
_FLAGS.update({alias: _FLAGS[name] for alias, name in _ALIASES.items()})
FLAG_NAMES: tuple[str, ...] = tuple(flag.name for flag in _FLAG_LIST)
FIELD_NAMES: tuple[str, ...] = ("prompt", *FLAG_NAMES)


# ---------------------------------------------------------------------------------------
# Scanning text into words and flags


@dataclass(frozen=True)
class _Given:
    flag: _Flag
    spelled: str  # as the user wrote it ("--aspect"), so messages use their words
    raw: str | None  # None: the flag came without a value


# "--" or the em/en dash that phones and Slack autocorrect "--" into, then a name.
_MARKER = re.compile(r"(--|[\u2013\u2014])([^\W\d_][\w-]*)(.*)", re.S)


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _show(text: str) -> str:
    """A bad value quoted for a message: cut short, and repr keeps it on one line."""
    return repr(_cut(text))


def _suggest(name: str, candidates: Iterable[str], listed: Iterable[str], prefix: str) -> str:
    """The closest known name (aliases count), or else the list of canonical names."""
    close = difflib.get_close_matches(name.lower(), list(candidates), n=1)
    if close:
        return f" Did you mean {prefix}{close[0]}?"
    return f" Known: {', '.join(prefix + known for known in listed)}."


def _read_flag(token: str) -> tuple[_Flag, str, str | None] | None:
    """(flag, spelling, inline value) when the token is a flag, None when it is text."""
    match = _MARKER.match(token)
    if not match:
        return None
    dash, name, rest = match.groups()
    flag = _FLAGS.get(name.lower())
    if flag is not None and (rest == "" or rest.startswith("=")):
        return flag, f"--{name.lower()}", rest[1:] if rest else None
    if dash != "--":
        # A dash before an ordinary word is punctuation ("fox —wild"), not a typo.
        return None
    # The token came from str.split(), so it holds no line break: no repr needed.
    suggestion = _suggest(name, _FLAGS, FLAG_NAMES, "--")
    raise PromptError(f"Unknown flag {_cut(token)}.{suggestion}")


def _scan(text: str) -> tuple[list[str], list[_Given]]:
    """Split text into prompt words and flags with their raw values, left to right."""
    tokens = text.split()
    words: list[str] = []
    given: list[_Given] = []
    i = 0
    while i < len(tokens):
        read = _read_flag(tokens[i])
        i += 1
        if read is None:
            words.append(tokens[i - 1])
            continue
        flag, spelled, inline = read
        values = [inline] if inline else []
        # --no takes every word up to the next flag; the others take exactly one.
        while i < len(tokens) and (flag.name == "no" or not values):
            if _read_flag(tokens[i]) is not None:
                break
            values.append(tokens[i])
            i += 1
        given.append(_Given(flag, spelled, " ".join(values) or None))
    return words, given


# ---------------------------------------------------------------------------------------
# Validating and building the request


def _collect(given: Iterable[_Given], limits: Limits) -> dict[str, Any]:
    """Run each flag's validator; repeated flags are errors except --no, which accumulates."""
    values: dict[str, Any] = {}
    negatives: list[str] = []
    for item in given:
        wants = item.flag.wants(limits)
        if item.raw is None:
            raise PromptError(f"{item.spelled} needs a value: {wants}.")
        value = item.flag.convert(item.raw, limits)
        if value is None:
            raise PromptError(f"{item.spelled} must be {wants}, not {_show(item.raw)}.")
        if item.flag.name == "no":
            negatives.append(value)
        elif item.flag.name in values:
            raise PromptError(
                f"--{item.flag.name} is given twice: give each flag once (only --no repeats)."
            )
        else:
            values[item.flag.name] = value
    if negatives:
        values["no"] = ", ".join(negatives)
    return values


def _check_prompt(prompt: str, negative: str, limits: Limits) -> None:
    if not prompt:
        raise PromptError(
            "The prompt is empty: describe the image, e.g. `a red fox in snow --ar 16:9`."
        )
    for what, text in (("prompt", prompt), ("--no text", negative)):
        if len(text) > limits.max_prompt_length:
            raise PromptError(
                f"The {what} is too long: {len(text)} characters, "
                f"the limit is {limits.max_prompt_length}."
            )


def _dimensions(values: Mapping[str, Any], limits: Limits) -> tuple[int, int]:
    if "ar" in values and "size" in values:
        raise PromptError(
            "Give either --ar or --size, not both: --ar keeps the default area, "
            "--size sets width and height."
        )
    if "ar" in values:
        return size_for_ratio(values["ar"], limits)
    if "size" in values:
        size: tuple[int, int] = values["size"]
        return size
    return limits.default_dims


def _build(words: list[str], values: Mapping[str, Any], limits: Limits) -> ImageRequest:
    prompt = " ".join(words)
    negative = values.get("no", "")
    _check_prompt(prompt, negative, limits)
    width, height = _dimensions(values, limits)
    return ImageRequest(
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        seed=values.get("seed"),
        num_inference_steps=values.get("steps", limits.default_steps),
        guidance_scale=values.get("cfg", limits.default_cfg),
        num_images=values.get("n", 1),
        model=values.get("model", "default"),
        sampler=values.get("sampler", limits.default_sampler),
    )


# ---------------------------------------------------------------------------------------
# Public API


def parse(text: str, limits: Limits) -> ImageRequest:
    """Turn `a red fox --ar 16:9 --seed 7 --no text` into a request; PromptError if invalid."""
    words, given = _scan(text)
    return _build(words, _collect(given, limits), limits)


def request_from_fields(
    fields: Mapping[str, str | int | float | None], limits: Limits
) -> ImageRequest:
    """The same rules for front ends with separate fields named like the flags.

    The `prompt` field is read with the full grammar, so a prompt URL may carry its flags
    inline; a flag given both inline and as a field is a duplicate. Empty fields are unset.
    """
    words: list[str] = []
    given: list[_Given] = []
    for key, value in fields.items():
        text = _field_text(value)
        if text is None:
            continue
        if key.lower() == "prompt":
            more_words, more_given = _scan(text)
            words += more_words
            given += more_given
            continue
        flag = _FLAGS.get(key.lower())
        if flag is None:
            suggestion = _suggest(key, (*FIELD_NAMES, *_ALIASES), FIELD_NAMES, "")
            raise PromptError(f"Unknown field {_show(key)}.{suggestion}")
        if flag.name == "no":
            text = _words_only(text)
        given.append(_Given(flag, f"--{key.lower()}", text))
    return _build(words, _collect(given, limits), limits)


def _field_text(value: str | int | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        # JSON and typed options send 2.0 for 2; repr round-trips the rest exactly, and
        # nan and inf then fail validation like any other bad text.
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip() or None


def _words_only(text: str) -> str:
    """A --no field is plain text: flags inside it would not survive format_request."""
    words, given = _scan(text)
    if given:
        raise PromptError(f"The no field cannot contain flags such as {given[0].spelled}.")
    return " ".join(words)


def _number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def format_request(request: ImageRequest, limits: Limits) -> str:
    """The request as prompt text that parses back to it, with defaults left out."""
    parts = [request.prompt]
    if (request.width, request.height) != limits.default_dims:
        parts.append(f"--size {request.width}x{request.height}")
    if request.seed is not None:
        parts.append(f"--seed {request.seed}")
    if request.num_inference_steps != limits.default_steps:
        parts.append(f"--steps {request.num_inference_steps}")
    if request.guidance_scale != limits.default_cfg:
        parts.append(f"--cfg {_number(request.guidance_scale)}")
    if request.num_images != 1:
        parts.append(f"--n {request.num_images}")
    if request.model != "default":
        parts.append(f"--model {request.model}")
    if request.sampler != limits.default_sampler:
        parts.append(f"--sampler {request.sampler}")
    # Last, because --no takes every word up to the next flag.
    if request.negative_prompt:
        parts.append(f"--no {request.negative_prompt}")
    return " ".join(parts)
