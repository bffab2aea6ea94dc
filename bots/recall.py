"""Recall: the request behind a PNG, from the A1111 `parameters` text inside it.

Our own PNGs carry that text (generator/png.py), and so do A1111's, Forge's and those of
tools that imitate them (ComfyUI and InvokeAI savers). `recall_png` reads it back into an
`ImageRequest` this server can draw: values outside this server's limits are brought within
them and each change is said in a note; keys we do not use are kept in `parameters` and
ignored. An operation's PNG (upscale, zoom out, pan, inpaint, img2img) names its source
image's hash, so the request repeats the operation while that image is still in storage.
Pure: no I/O.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image

from bots.errors import PromptError
from bots.followups import TITLES, FollowUpLimits
from bots.grammar import format_request
from bots.limits import CFG_MAX, Limits, fit_size
from bots.recall_models import (
    control_line,
    recalled_control,
    recalled_loras,
    shown,
    without_control,
)
from bots.recall_operations import number, recalled_operation
from generator import png
from generator.geometry import fit_within
from generator.request import (
    SAMPLER_LABELS,
    SAMPLERS,
    SEED_MAX,
    ImageRequest,
)
from settings.i18n import N_, _

# How A1111-style tools spell the samplers we have: our labels, our names, and the spellings
# of ComfyUI (euler_ancestral, dpmpp_2m) and InvokeAI (k_euler_a, dpmpp_2m_k).
_SAMPLER_NAMES: dict[str, str] = {
    **{name: name for name in SAMPLERS},
    **{label.casefold(): name for name, label in SAMPLER_LABELS.items()},
    "euler_ancestral": "euler_a", "k_euler_a": "euler_a", "k_euler": "euler",
    "k_heun": "heun", "dpmpp_2m": "dpm++2m", "k_dpmpp_2m": "dpm++2m",
    "dpmpp_2m_k": "dpm++2m_karras", "dpmpp_sde": "dpm++sde", "k_lms": "lms",
    "uni_pc": "unipc", "uni_pc_bh2": "unipc",
}
# Schedules that mean "the sampler's own": nothing to say about them.
_PLAIN_SCHEDULES = ("", "automatic", "normal", "default")
_MODE_TITLES = {"img2img": N_("Image prompt"), "upscale": TITLES["upscale"],
                "upscale_creative": TITLES["upscale_creative"], "zoom_out": TITLES["zoom_out"],
                "pan": TITLES["pan"], "inpaint": TITLES["vary_region"]}
# The recorded prompts as notes name them (the keys are what the code passes around).
_PROMPT_NAMES = {"prompt": N_("prompt"), "negative prompt": N_("negative prompt")}

# What a prompt text says of a request; the rest belongs to the operation.
_PROMPT_FIELDS = {"prompt", "negative_prompt", "seed", "num_inference_steps", "guidance_scale",
                  "num_images", "model", "sampler", "loras"}
# A word the prompt grammar would read as a flag (--ar, —no).
_FLAG_LIKE = re.compile(r"^(?:--|[\u2013\u2014])(?=[^\W\d_])")
_DIGITS = re.compile(r"[0-9]{1,40}")  # str.isdigit() would pass "²", which int() refuses
_SIZE = re.compile(r"\s*([0-9]{1,6})\s*[xX\u00d7]\s*([0-9]{1,6})\s*")


class NoParameters(PromptError):
    """The image carries no A1111 `parameters` text to recall (the REST API answers 422)."""


@dataclass(frozen=True)
class Recalled:
    """What a PNG recalls: the request to draw, its prompt text, everything the PNG said, and
    what changed to fit this server."""

    request: ImageRequest
    text: str
    parameters: dict[str, object]
    notes: tuple[str, ...]


def recall_png(data: bytes, limits: Limits, follow_ups: FollowUpLimits | None = None
               ) -> Recalled:
    """The request recorded in a PNG, brought within `limits`.

    `follow_ups` bounds a recalled upscale (IMAGINE_MAX_UPSCALE_PIXELS); without it the
    settings' default applies. NoParameters when the image records nothing, PromptError when
    the bytes are not an image.
    """
    parsed = png.parse_parameters(parameters_of(data))
    notes: list[str] = []
    request = _request(parsed, limits, follow_ups or FollowUpLimits(max_pixels=limits.max_pixels),
                       notes)
    return Recalled(request, recall_text(request, limits), parsed.as_dict(), tuple(notes))


# ---------------------------------------------------------------------------------------
# The text inside the file


def parameters_of(data: bytes) -> str:
    """The `parameters` text of a PNG; NoParameters or PromptError (not an image) otherwise."""
    if data.startswith(png.PNG_SIGNATURE):
        chunks = png.text_chunks(data)
        text = chunks.get(png.PARAMETERS_KEY)
        if text is not None and text.strip():
            return text
        comfy = _(" It holds a ComfyUI workflow, which recall does not read.") if (
            "workflow" in chunks or "prompt" in chunks) else ""
        raise NoParameters(_("This PNG carries no generation parameters (A1111 `parameters` "
                             "text): recall reads images saved by imagine, A1111, Forge and "
                             "tools that write the same text; use the original file.{comfy}").format(
                               comfy=comfy))
    kind, comment = _other_image(data)
    if comment is not None and comment.strip():
        return comment  # A1111's JPEG and WebP files carry the same text in EXIF
    if kind is None:
        raise PromptError(_("This file is not an image: recall reads a PNG that carries "
                            "generation parameters (A1111 `parameters` text)."))
    raise NoParameters(_("This {kind} image carries no generation parameters: recall reads the "
                         "A1111 `parameters` text of a PNG, which converting to {kind} (as "
                         "many chats do) drops; use the original PNG file.").format(kind=kind))


def _other_image(data: bytes) -> tuple[str | None, str | None]:
    """(JPEG, WEBP, …; its EXIF UserComment) of bytes Pillow recognises as an image, from
    the header alone; (None, None) when they are not an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge header is still an image
            with Image.open(io.BytesIO(data)) as image:
                return image.format or "image", png.exif_comment(image)
    except Image.DecompressionBombError:
        return "image", None
    except (OSError, ValueError, SyntaxError):
        return None, None


# ---------------------------------------------------------------------------------------
# The request, within this server's limits


def _request(parsed: png.Parameters, limits: Limits, follow_ups: FollowUpLimits,
             notes: list[str]) -> ImageRequest:
    entries = parsed.entries
    text, loras = recalled_loras(parsed.prompt, limits, notes)
    prompt = _prompt(text, "prompt", limits, notes)
    if not prompt:
        raise NoParameters(_("This image's parameters have an empty prompt: there is nothing "
                             "to recall; write a prompt with /imagine instead."))
    operation = recalled_operation(entries, notes)
    width, height = _size(entries.get("Size"), str(operation.get("mode", "txt2img")), limits,
                          follow_ups, notes)
    return ImageRequest.model_validate({
        "prompt": prompt,
        "negative_prompt": _prompt(parsed.negative_prompt, "negative prompt", limits, notes),
        "width": width,
        "height": height,
        "seed": _seed(entries.get("Seed"), notes),
        "num_inference_steps": _steps(entries.get("Steps"), limits, notes),
        "guidance_scale": _cfg(entries.get("CFG scale"), limits, notes),
        "model": _model(entries.get("Model"), limits, notes),
        "sampler": _sampler(entries, limits, notes),
        "loras": loras,
        # A prompt that was translated or enhanced (#16) is recalled as drawn, not again.
        "raw": png.ORIGINAL_PROMPT in entries or png.ENHANCED in entries,
        **operation,
        **recalled_control(entries, str(operation.get("mode", "txt2img")), limits, notes),
    })


def _prompt(text: str, what: str, limits: Limits, notes: list[str]) -> str:
    """The grammar's form of a recorded prompt: one line, no words that read as flags, at
    most IMAGINE_MAX_PROMPT_LENGTH characters."""
    words = text.split()
    safe = [_FLAG_LIKE.sub("-", word) for word in words]
    if safe != words:
        notes.append(_("Words of the {what} that read as flags (--word) now start with one "
                       "dash, so they stay text.").format(what=_(_PROMPT_NAMES.get(what, what))))
    joined = " ".join(safe)
    if what != "prompt":  # --no strips the commas at its edges, so the text parses back
        joined = joined.strip(" ,")
    if len(joined) > limits.max_prompt_length:
        cut = joined[:limits.max_prompt_length + 1].rsplit(" ", 1)[0]
        joined = (cut if len(cut) <= limits.max_prompt_length
                  else joined[:limits.max_prompt_length]).rstrip(" ,")
        notes.append(_("The {what} was cut to {length} characters, this server's limit "
                       "being {limit} (IMAGINE_MAX_PROMPT_LENGTH).").format(
                         what=_(_PROMPT_NAMES.get(what, what)), length=len(joined),
                         limit=limits.max_prompt_length))
    return joined


def _steps(raw: str | None, limits: Limits, notes: list[str]) -> int:
    value = number(raw)
    if raw is None:
        return limits.default_steps
    if value is None or value < 1 or not value.is_integer():
        notes.append(_("Steps {shown} is not a whole number of steps: {steps} "
                       "used.").format(
                         shown=shown(raw), steps=limits.default_steps))
        return limits.default_steps
    if value > limits.max_steps:
        notes.append(_("Steps {value} is over this server's limit: {steps} used "
                       "(IMAGINE_MAX_STEPS).").format(
                         value=int(value), steps=limits.max_steps))
        return limits.max_steps
    return int(value)


def _cfg(raw: str | None, limits: Limits, notes: list[str]) -> float:
    value = number(raw)
    if raw is None:
        return limits.default_cfg
    if value is None:
        notes.append(_("CFG scale {shown} is not a number: {cfg:g} used.").format(
                         shown=shown(raw), cfg=limits.default_cfg))
        return limits.default_cfg
    if not 0.0 <= value <= CFG_MAX:
        clamped = min(max(value, 0.0), CFG_MAX)
        notes.append(_("CFG scale {value:g} is outside 0 to {most:g}: {clamped:g} used.").format(
                         value=value, most=CFG_MAX, clamped=clamped))
        return clamped
    return value


def _seed(raw: str | None, notes: list[str]) -> int | None:
    if raw is None:
        return None
    value = raw.strip()
    if not _DIGITS.fullmatch(value):
        notes.append(_("Seed {shown} is not a seed: a new one is drawn.").format(
                         shown=shown(raw)))
        return None
    seed = int(value)
    if seed > SEED_MAX:
        # 64-bit seeds (ComfyUI) give other noise here anyway; keep them stable at least.
        notes.append(_("Seed {seed} is over {most}: {number} used, so the image differs "
                       "from the original.").format(
                         seed=seed, most=SEED_MAX, number=seed % (SEED_MAX + 1)))
        return seed % (SEED_MAX + 1)
    return seed


def _size(raw: str | None, mode: str, limits: Limits, follow_ups: FollowUpLimits,
          notes: list[str]) -> tuple[int, int]:
    if raw is None:
        return limits.default_dims
    match = _SIZE.fullmatch(raw)
    if match is None or 0 in (int(match.group(1)), int(match.group(2))):
        notes.append(_("Size {shown} is not WxH: {size} used.").format(
                         shown=shown(raw), size="x".join(map(str, limits.default_dims))))
        return limits.default_dims
    width, height = int(match.group(1)), int(match.group(2))
    cap, variable = limits.max_pixels, "IMAGINE_MAX_PIXELS"
    if mode in ("upscale", "upscale_creative", "inpaint"):
        # An upscale, and Vary (Region) of an upscaled image, may be as large as upscales go.
        cap = max(cap, follow_ups.max_upscale_pixels)
        variable = "IMAGINE_MAX_UPSCALE_PIXELS"
    # A prompt's size snaps to IMAGINE_SIZE_MULTIPLE; an operation's follows its source (8s).
    fitted = (fit_size(width, height, limits) if mode == "txt2img"
              else fit_within(width, height, cap))
    if fitted != (width, height):
        why = (_("over this server's limit of {cap} pixels ({variable})").format(
                   cap=cap, variable=variable) if width * height > cap
               else _("not a multiple of the sizes this server draws"))
        notes.append(_("Size {width}x{height} is {why}: {fitted_width}x{fitted_height} "
                       "used.").format(width=width, height=height, why=why,
                                       fitted_width=fitted[0], fitted_height=fitted[1]))
    return fitted


def _model(raw: str | None, limits: Limits, notes: list[str]) -> str:
    if raw is None or not raw.strip():
        return "default"
    folded = raw.strip().casefold()
    for name in limits.models:
        if name.casefold() == folded:
            return name
    for name, label in limits.model_labels:
        if label.casefold() == folded:
            return name
    notes.append(_("Model {shown} is not on this server: the default model is used.").format(
                     shown=shown(raw.strip())))
    return "default"


def _sampler(entries: Mapping[str, str], limits: Limits, notes: list[str]) -> str:
    raw = entries.get("Sampler")
    if raw is None:
        return limits.default_sampler
    name = _SAMPLER_NAMES.get(raw.strip().casefold())
    if name is None:
        notes.append(_("Sampler {shown} is not available here: {sampler} is used.").format(
                         shown=shown(raw), sampler=SAMPLER_LABELS[limits.default_sampler]))
        return limits.default_sampler
    # A1111 1.9+ writes the schedule apart ("DPM++ 2M" + "Schedule type: Karras"); ComfyUI
    # calls it "Scheduler".
    schedule = (entries.get("Schedule type") or entries.get("Scheduler") or "").strip()
    if schedule.casefold() == "karras" and not name.endswith("_karras"):
        if f"{name}_karras" in SAMPLERS:
            return f"{name}_karras"
        notes.append(_("The Karras schedule is not available with {sampler} here: its "
                       "usual schedule is used.").format(sampler=SAMPLER_LABELS[name]))
    elif schedule.casefold() not in (*_PLAIN_SCHEDULES, "karras"):
        notes.append(_("Schedule type {shown} is not available here: {sampler}'s usual "
                       "schedule is used.").format(
                         shown=shown(schedule), sampler=SAMPLER_LABELS[name]))
    return name


# ---------------------------------------------------------------------------------------
# The request as text


def recall_text(request: ImageRequest, limits: Limits) -> str:
    """Prompt text that parses back to the request; an operation adds a line that names it
    and its source image (the text alone draws the prompt, Run again repeats the operation);
    a ControlNet adds a line naming its control image."""
    line = control_line(request)
    if line is not None:
        return f"{recall_text(without_control(request), limits)}\n{line}"
    if request.mode == "txt2img":
        return format_request(request, limits)
    # The first line is the prompt alone, a text someone can paste into /imagine.
    width, height = fit_size(request.width, request.height, limits)
    prompt = format_request(ImageRequest(**{**request.model_dump(include=_PROMPT_FIELDS),
                                            "width": width, "height": height}), limits)
    title = _(_MODE_TITLES[request.mode])
    if request.factor is not None:
        title += f" {request.factor:g}×"
    if request.direction is not None:
        title += f" {request.direction}"
    # Whole sentences per case, so a language may order the parts its own way.
    strength = request.mode in ("img2img", "upscale_creative")
    if request.mask_image is not None:
        line = (_("{operation}: {title} of image {image} with mask {mask} at strength "
                  "{strength:g}") if strength
                else _("{operation}: {title} of image {image} with mask {mask}"))
    else:
        line = (_("{operation}: {title} of image {image} at strength {strength:g}") if strength
                else _("{operation}: {title} of image {image}"))
    line = line.format(operation=png.OPERATION, title=title, image=request.source_image,
                       mask=request.mask_image, strength=request.strength)
    return f"{prompt}\n{line} → {request.width}x{request.height}"
