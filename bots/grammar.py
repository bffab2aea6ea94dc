"""The one prompt grammar: free text plus Midjourney-style flags, for every front end.

`parse("a red fox --ar 16:9 --seed 7 --no text", limits)` gives an `ImageRequest`;
`format_request` writes a request back as text that parses to the same request. Front ends
with separate fields (web query strings, Discord options) call `request_from_fields`, which
runs the same per-flag validators. Every error is a one-line `PromptError` a user can act on.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bots.errors import PromptError
from bots.flags import ALIASES, FIELD_NAMES, FLAG_NAMES, FLAGS, Flag
from bots.limits import Limits, size_for_ratio
from bots.model_flags import (
    Control,
    format_control,
    format_lora,
    lora_tags,
    needs_control_image,
)
from generator.a1111_syntax import PromptSyntaxError
from generator.a1111_syntax import check as check_weights
from generator.request import IMAGE_PROMPT_STRENGTH, MAX_LORAS, ImageRequest, LoraUse
from settings.i18n import N_, _

# How much of a bad value an error message repeats: enough to recognise, never a wall.
_SHOWN = 40

USAGE = N_(  # shown with _(USAGE)
    "Usage: PROMPT [flags], e.g. `a red fox in snow --ar 16:9 --seed 7 --no text`\n"
    "Size: --ar W:H (1:4 to 4:1) or --size WxH · Images: --n N · Seed: --seed N\n"
    "Sampling: --steps N, --cfg X (0-30), --sampler NAME, --model NAME, --lora NAME[:W]\n"
    "Image prompt: an image URL first (or attached), --strength 0-1 (or --iw 0-3); "
    "ControlNet: --cn KIND[:W] with a control image\n"
    "Leave things out with --no TEXT; --flag=value works too."
)


# ---------------------------------------------------------------------------------------
# Scanning text into words and flags


@dataclass(frozen=True)
class _Given:
    flag: Flag
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
        return _(" Did you mean {name}?").format(name=prefix + close[0])
    return _(" Known: {names}.").format(names=", ".join(prefix + known for known in listed))


def _read_flag(token: str) -> tuple[Flag, str, str | None] | None:
    """(flag, spelling, inline value) when the token is a flag, None when it is text."""
    match = _MARKER.match(token)
    if not match:
        return None
    dash, name, rest = match.groups()
    flag = FLAGS.get(name.lower())
    if flag is not None and (rest == "" or rest.startswith("=")):
        return flag, f"--{name.lower()}", rest[1:] if rest else None
    if dash != "--":
        # A dash before an ordinary word is punctuation ("fox —wild"), not a typo.
        return None
    # The token came from str.split(), so it holds no line break: no repr needed.
    suggestion = _suggest(name, FLAGS, FLAG_NAMES, "--")
    raise PromptError(_("Unknown flag {flag}.").format(flag=_cut(token)) + suggestion)


def _scan(text: str) -> tuple[list[str], list[_Given]]:
    """Split text into prompt words and flags with their raw values, left to right; the
    <lora:…> tags of A1111 prompts count as --lora flags."""
    text, tags = lora_tags(text)
    tokens = text.split()
    words: list[str] = []
    given = [_Given(FLAGS["lora"], "<lora:…>", tag) for tag in tags]
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
        while i < len(tokens) and not flag.switch and (flag.name == "no" or not values):
            if _read_flag(tokens[i]) is not None:
                break
            values.append(tokens[i])
            i += 1
        given.append(_Given(flag, spelled, " ".join(values) or None))
    return words, given


# ---------------------------------------------------------------------------------------
# Validating and building the request


def _collect(given: Iterable[_Given], limits: Limits) -> dict[str, Any]:
    """Run each flag's validator; repeated flags are errors except --no, which accumulates,
    and --lora, which lists each LoRA once."""
    values: dict[str, Any] = {}
    negatives: list[str] = []
    loras: list[LoraUse] = []
    for item in given:
        wants = item.flag.wants(limits)
        if item.raw is None and not item.flag.switch:
            raise PromptError(_("{flag} needs a value: {wants}.").format(flag=item.spelled,
                                                                            wants=wants))
        value = item.flag.convert("1" if item.raw is None else item.raw, limits)
        if value is None:
            raise PromptError(_("{flag} must be {wants}, not {value}.").format(
                flag=item.spelled, wants=wants, value=_show(item.raw or "")))
        if item.flag.name == "no":
            negatives.append(value)
        elif item.flag.name == "lora":
            if any(lora.name == value.name for lora in loras):
                raise PromptError(_("The LoRA {name} is given twice: give each LoRA once, "
                                    "with its weight (--lora NAME:0.8).").format(name=value.name))
            loras.append(value)
        elif item.flag.name in values:
            raise PromptError(_("--{flag} is given twice: give each flag once (only --no and "
                                "--lora repeat).").format(flag=item.flag.name))
        else:
            values[item.flag.name] = value
    if negatives:
        values["no"] = ", ".join(negatives)
    if len(loras) > MAX_LORAS:
        raise PromptError(_("{count} LoRAs given: a job may use at most {max}.").format(
            count=len(loras), max=MAX_LORAS))
    if loras:
        values["lora"] = tuple(loras)
    return values


def _check_prompt(prompt: str, negative: str, limits: Limits) -> None:
    if not prompt:
        raise PromptError(
            _("The prompt is empty: describe the image, e.g. `a red fox in snow --ar 16:9`.")
        )
    for too_long, text in ((N_("The prompt is too long: {count} characters, the limit is "
                               "{limit}."), prompt),
                           (N_("The --no text is too long: {count} characters, the limit is "
                               "{limit}."), negative)):
        if len(text) > limits.max_prompt_length:
            raise PromptError(_(too_long).format(count=len(text),
                                                 limit=limits.max_prompt_length))
        try:  # a (word:9) fails here, before the job waits in line, not on the worker
            check_weights(text)
        except PromptSyntaxError as exc:
            raise PromptError(str(exc)) from None


def _dimensions(values: Mapping[str, Any], limits: Limits) -> tuple[int, int]:
    if "ar" in values and "size" in values:
        raise PromptError(_("Give either --ar or --size, not both: --ar keeps the default "
                            "area, --size sets width and height."))
    if "ar" in values:
        return size_for_ratio(values["ar"], limits)
    if "size" in values:
        size: tuple[int, int] = values["size"]
        return size
    return limits.default_dims


def _strength(values: Mapping[str, Any], image: bool) -> dict[str, Any]:
    """{"strength": value} when --strength or --iw was given (an image prompt's), else {}."""
    if "strength" in values and "iw" in values:
        raise PromptError(_("Give either --strength or --iw, not both: --iw 1 is --strength "
                            "{strength}, more weight is closer to the image.").format(
                                strength=f"{IMAGE_PROMPT_STRENGTH:g}"))
    given = "strength" if "strength" in values else "iw" if "iw" in values else None
    if given is None:
        return {}
    if not image:
        raise PromptError(_("--{flag} only applies to an image prompt: put an image URL "
                            "first (https://…/cat.png a cat) or attach an image.").format(
                                flag=given))
    return {"strength": values[given]}


def _build(words: list[str], values: Mapping[str, Any], limits: Limits,
           image: bool = False) -> ImageRequest:
    prompt = " ".join(words)
    # The chosen model's catalogue defaults stand in for the flags left out (--ar keeps
    # its default area); without configured defaults these are the server's limits.
    limits = limits.for_model(values.get("model", "default"))
    negative = values.get("no", limits.default_negative)
    strength = _strength(values, image or _leading_url(words))
    _check_prompt(prompt, negative, limits)
    width, height = _dimensions(values, limits)
    return ImageRequest(
        prompt=prompt, negative_prompt=negative, width=width, height=height,
        seed=values.get("seed"),
        num_inference_steps=values.get("steps", limits.default_steps),
        guidance_scale=values.get("cfg", limits.default_cfg),
        num_images=values.get("n", 1),
        model=values.get("model", "default"),
        sampler=values.get("sampler", limits.default_sampler),
        loras=values.get("lora", ()),
        raw=values.get("raw", False), enhance=values.get("enhance", False),
        # Only set when given: an unset field keeps published URLs' identities.
        **strength,
    )


_URL = re.compile(r"(?:https?://|data:image/)\S+", re.I)


def _leading_url(words: list[str]) -> bool:
    """Whether the text starts with an image's URL (Midjourney's image prompt)."""
    return bool(words) and bool(_URL.fullmatch(words[0]))


# ---------------------------------------------------------------------------------------
# Public API


def parse(text: str, limits: Limits, *, image: bool = False) -> ImageRequest:
    """Turn `a red fox --ar 16:9 --seed 7 --no text` into a request; PromptError if invalid.

    --strength/--iw need an image: `image=True` (an attachment) or a URL as the first word.
    They are kept in the (still txt2img) request's `strength`, set only when given, for
    `bots.image_prompts` to draw from the image with. --cn needs a control image, which
    text alone cannot carry: it is refused here (see parse_with_control)."""
    return _without_control(*parse_with_control(text, limits, image=image))


def parse_with_control(text: str, limits: Limits, *, image: bool = False
                       ) -> tuple[ImageRequest, Control | None]:
    """parse() for a prompt that comes with a control image: the request (without its
    ControlNet) and the --cn given, for `bots.image_prompts` to add with the stored image."""
    words, given = _scan(text)
    values = _collect(given, limits)
    control = values.pop("cn", None)
    return _build(words, values, limits, image), control


def _without_control(request: ImageRequest, control: Control | None) -> ImageRequest:
    if control is not None:
        raise needs_control_image(control)
    return request


FieldValue = str | int | float | Sequence[str] | None


def request_from_fields(fields: Mapping[str, FieldValue], limits: Limits, *,
                        image: bool = False) -> ImageRequest:
    """The same rules for front ends with separate fields named like the flags.

    The `prompt` field is read with the full grammar, so a prompt URL may carry its flags
    inline; a flag given both inline and as a field is a duplicate. Empty fields are unset.
    `lora` takes several LoRAs: "a:0.8,b" or a list. A `cn` field is refused (no control
    image here: see fields_with_control).
    """
    return _without_control(*fields_with_control(fields, limits, image=image))


def fields_with_control(fields: Mapping[str, FieldValue], limits: Limits, *, image: bool = False
                        ) -> tuple[ImageRequest, Control | None]:
    """request_from_fields() for a request that comes with a control image: the request
    (without its ControlNet) and the `cn` given."""
    words: list[str] = []
    given: list[_Given] = []
    for key, value in fields.items():
        if key.lower() == "lora":
            given += [_Given(FLAGS["lora"], "--lora", text) for text in _lora_field(value)]
            continue
        text = _field_text(value)
        if text is None:
            continue
        if key.lower() == "prompt":
            more_words, more_given = _scan(text)
            words += more_words
            given += more_given
            continue
        flag = FLAGS.get(key.lower())
        if flag is None:
            suggestion = _suggest(key, (*FIELD_NAMES, *ALIASES), FIELD_NAMES, "")
            raise PromptError(_("Unknown field {field}.").format(field=_show(key)) + suggestion)
        if flag.name == "no":
            text = _words_only(text)
        given.append(_Given(flag, f"--{key.lower()}", text))
    values = _collect(given, limits)
    control = values.pop("cn", None)
    return _build(words, values, limits, image), control


def _lora_field(value: FieldValue) -> list[str]:
    """The LoRAs of a `lora` field: comma-separated text, or a list of such texts."""
    texts = [value] if isinstance(value, str) else list(value or ()) if not isinstance(
        value, int | float) else [str(value)]
    return [part.strip() for text in texts for part in str(text).split(",") if part.strip()]


def _field_text(value: FieldValue) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        return " ".join(str(item) for item in value) or None
    if isinstance(value, float):
        # JSON and typed options send 2.0 for 2; repr round-trips the rest exactly, and
        # nan and inf then fail validation like any other bad text.
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip() or None


def _words_only(text: str) -> str:
    """A --no field is plain text: flags inside it would not survive format_request."""
    words, given = _scan(text)
    if given:
        raise PromptError(_("The no field cannot contain flags such as {flag}.").format(
            flag=given[0].spelled))
    return " ".join(words)


def _number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def given_strength(request: ImageRequest) -> float | None:
    """The --strength (or --iw) of a request just parsed, None when none was given.

    Only for a request fresh from parse/request_from_fields (which never set `mode`): one
    read back from a stored job has every field set, `mode` included."""
    fresh = "mode" not in request.model_fields_set
    if request.mode == "txt2img" and fresh and "strength" in request.model_fields_set:
        return request.strength
    return None


def _written_strength(request: ImageRequest) -> float | None:
    """The --strength format_request writes: an image prompt's when not its default, or
    one a txt2img request carries for an image prompt still to be read (chat options)."""
    if request.mode == "img2img":
        return request.strength if request.strength != IMAGE_PROMPT_STRENGTH else None
    return given_strength(request)


def format_request(request: ImageRequest, limits: Limits,
                   control: Control | None = None) -> str:
    """The request as prompt text that parses back to it, with defaults left out. Its
    ControlNet (or `control`, one still to be given its image) is written as --cn; the
    control image itself cannot be written as text."""
    limits = limits.for_model(request.model)  # a value equal to the model's default is left out
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
    if _written_strength(request) is not None:
        parts.append(f"--strength {_number(request.strength)}")
    parts += [f"--lora {format_lora(lora)}" for lora in request.loras]
    if request.control is not None:
        control = Control(request.control, request.control_weight)
    if control is not None:
        parts.append(f"--cn {format_control(control)}")
    parts += [f"--{name}" for name in ("raw", "enhance") if getattr(request, name)]
    # Last, because --no takes every word up to the next flag.
    if request.negative_prompt and request.negative_prompt != limits.default_negative:
        parts.append(f"--no {request.negative_prompt}")
    return " ".join(parts)
