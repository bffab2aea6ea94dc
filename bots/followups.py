"""What every button under an image means, once for every front end.

`follow_up(parent, index, action, limits)` turns a button press (Slack, Discord) or a REST
call (`POST /api/v1/jobs/<id>/actions`) into the new job's ImageRequest, or raises a
PromptError whose message tells the user what to do instead. `result_rows(job)` is the
platform-neutral layout of the buttons under a finished job; each chat renders it in its own
markup. Pure: no I/O, no platform.
"""

from __future__ import annotations

from dataclasses import dataclass

from bots.errors import PromptError
from generator.geometry import (
    DIRECTIONS,
    ZOOM_FACTORS,
    Direction,
    grown_size,
    pan_canvas,
    upscale_size,
    zoom_canvas,
)
from generator.request import ImageRequest
from settings import Settings
from settings.i18n import N_, _
from tasks.core.jobs import Job, JobStatus

REROLL, VARY_SUBTLE, VARY_STRONG, VARY_REGION = "reroll", "vary_subtle", "vary_strong", "vary_region"
UPSCALE, UPSCALE_CREATIVE, ZOOM_OUT, PAN = "upscale", "upscale_creative", "zoom_out", "pan"
ENHANCE = "enhance"  # the same prompt expanded by the enhancement LLM (#16)
# What follow_up() makes; Vary (Region) needs a painted mask first (bots.region).
ACTIONS = (REROLL, VARY_SUBTLE, VARY_STRONG, UPSCALE, UPSCALE_CREATIVE, ZOOM_OUT, PAN, ENHANCE)
# Buttons that make no job (#15): Report sends the image to the admins, Delete removes the
# result (requester or moderator), Show original gives the requester a spoilered image.
REPORT, DELETE, REVEAL = "report", "delete", "reveal"
MANAGE_BUTTONS = (REPORT, DELETE, REVEAL)
DEFAULT_ZOOM = 2.0
# Enhance pressed (or POSTed) on a server without an enhancement model (#16).
NO_ENHANCER = N_("Enhance is not available: this server has no prompt enhancement model "
                 "(IMAGINE_ENHANCE_MODEL). Use Reroll, or describe the image in more detail "
                 "yourself.")

# img2img strength: the share of the denoising schedule redrawn from the image. At 0.35 the
# composition, colours and pose stay and details change (Midjourney's "Vary (Subtle)"); at
# 0.75, diffusers' img2img default, only the layout survives ("Vary (Strong)").
VARY_STRENGTHS = {VARY_SUBTLE: 0.35, VARY_STRONG: 0.75}

# What a button titles the job it made, in both chats (English; shown with _(TITLES[…])).
TITLES = {REROLL: N_("Reroll"), VARY_SUBTLE: N_("Vary (Subtle)"),
          VARY_STRONG: N_("Vary (Strong)"), VARY_REGION: N_("Vary (Region)"),
          UPSCALE: N_("Upscale (Subtle)"), UPSCALE_CREATIVE: N_("Upscale (Creative)"),
          ZOOM_OUT: N_("Zoom Out"), PAN: N_("Pan"), ENHANCE: N_("Enhance"),
          "vary": N_("Vary (Subtle)")}
_SIDES = {"left": N_("Left"), "right": N_("Right"), "up": N_("Up"), "down": N_("Down")}


def title(action: str | None, request: ImageRequest) -> str:
    """What made a job, as its button said: "Upscale (Creative)", "Zoom Out 1.5x", "Pan Left";
    empty for a job typed as a prompt. In the current language."""
    if action == ZOOM_OUT and request.factor:
        return f"{_(TITLES[ZOOM_OUT])} {request.factor:g}x"
    if action == PAN and request.direction:
        side = _SIDES.get(request.direction)
        return f"{_(TITLES[PAN])} {_(side) if side else request.direction.title()}"
    return _(TITLES[action]) if action in TITLES else ""


@dataclass(frozen=True)
class Button:
    """One button: the name its id carries, the action it runs, and that action's option."""

    name: str
    action: str
    label: str
    emoji: str = ""
    factor: float | None = None
    direction: Direction | None = None


_ARROWS = {"left": "⬅️", "right": "➡️", "up": "⬆️", "down": "⬇️"}
BUTTONS: dict[str, Button] = {button.name: button for button in (
    Button(REROLL, REROLL, N_("Reroll"), "🔄"),
    Button(ENHANCE, ENHANCE, N_("Enhance"), "✨"),
    Button(REPORT, REPORT, N_("Report"), "🚩"),
    Button(DELETE, DELETE, N_("Delete"), "🗑️"),
    Button(REVEAL, REVEAL, N_("Show original"), "👁️"),
    Button(UPSCALE, UPSCALE, N_("Upscale (Subtle)")),
    Button(UPSCALE_CREATIVE, UPSCALE_CREATIVE, N_("Upscale (Creative)")),
    Button(VARY_SUBTLE, VARY_SUBTLE, N_("Vary (Subtle)")),
    Button(VARY_STRONG, VARY_STRONG, N_("Vary (Strong)")),
    Button(VARY_REGION, VARY_REGION, N_("Vary (Region)"), "🖌️"),
    Button("zoom_out_2x", ZOOM_OUT, N_("Zoom Out 2x"), "🔍", factor=2.0),
    Button("zoom_out_1_5x", ZOOM_OUT, N_("Zoom Out 1.5x"), "🔍", factor=1.5),
    *(Button(f"pan_{d}", PAN, "", _ARROWS[d], direction=d) for d in DIRECTIONS),
)}
# Names on buttons posted by earlier releases (custom ids `imagine:vary:…`): they keep working.
LEGACY_BUTTONS = {"vary": BUTTONS[VARY_SUBTLE]}
BUTTON_NAMES: tuple[str, ...] = (*BUTTONS, *LEGACY_BUTTONS)
LEGACY_ACTIONS = {name: button.action for name, button in LEGACY_BUTTONS.items()}

# (button, image index) rows under a finished job.
Row = list[tuple[Button, int]]
SINGLE_ROWS: tuple[tuple[str, ...], ...] = (
    (UPSCALE, UPSCALE_CREATIVE),
    (VARY_SUBTLE, VARY_STRONG, VARY_REGION),
    ("zoom_out_2x", "zoom_out_1_5x"),
    tuple(f"pan_{d}" for d in DIRECTIONS),
)


def result_rows(job: Job, *, enhance: bool = False) -> list[Row]:
    """The buttons under a finished job, at most five rows of at most five.

    A grid (several images) gets U1…Un (Upscale Subtle) and V1…Vn (Vary Subtle), as
    Midjourney does; a single image gets every operation. The last row: Reroll, Enhance
    (when `enhance`: a model is configured), Show original (an image shown blurred: the
    first such), Report (the first image shown) and Delete. A job without images: Reroll.
    Blocked images get no buttons of their own.
    """
    count = len(job.images) if job.status is JobStatus.done else 0
    shown = [i for i in range(count) if job.verdict(i).action != "block"]
    rows: list[Row] = []
    if count == 1 and shown:
        rows = [[(BUTTONS[name], 0) for name in row] for row in SINGLE_ROWS]
    elif len(shown) > 1:
        rows.append([(BUTTONS[UPSCALE], i) for i in shown[:5]])
        rows.append([(BUTTONS[VARY_SUBTLE], i) for i in shown[:5]])
    last: Row = [(BUTTONS[REROLL], 0)]
    if enhance:
        last.append((BUTTONS[ENHANCE], 0))
    blurred = [i for i in shown if job.verdict(i).blurred]
    if blurred:
        last.append((BUTTONS[REVEAL], blurred[0]))
    if shown:
        last += [(BUTTONS[REPORT], shown[0]), (BUTTONS[DELETE], 0)]
    rows.append(last)
    return rows


def button_label(button: Button, index: int, job: Job) -> str:
    """What a button shows: U2 / V3 under a grid, the operation's name (in the current
    language) under one image; "" for a button that shows only its emoji."""
    if len(job.images) > 1 and button.action in (UPSCALE, VARY_SUBTLE):
        return f"{'U' if button.action == UPSCALE else 'V'}{index + 1}"
    return _(button.label) if button.label else ""


class JobNotReady(PromptError):
    """The parent job is still queued or drawing (the REST API answers 409)."""


class NoImages(PromptError):
    """The parent job finished without images: it failed or was cancelled (409)."""


@dataclass(frozen=True)
class FollowUpLimits:
    """What the settings decide about follow-ups."""

    max_pixels: int = 1024 * 1024
    upscale_factor: int = 2
    max_upscale_pixels: int = 4096 * 4096
    enhance: bool = True  # IMAGINE_ENHANCE_MODEL is set: the Enhance action works (#16)

    @classmethod
    def from_settings(cls, settings: Settings) -> FollowUpLimits:
        return cls(max_pixels=settings.max_pixels, upscale_factor=settings.upscale_factor,
                   max_upscale_pixels=settings.max_upscale_pixels,
                   enhance=bool(settings.enhance_model))


def find_button(name: str) -> Button:
    """The button a name stands for, legacy names included."""
    button = BUTTONS.get(name) or LEGACY_BUTTONS.get(name)
    if button is None:
        raise PromptError(_("Unknown action {name}: use one of {actions}.").format(
            name=repr(name), actions=", ".join(ACTIONS)))
    return button


def canonical_action(name: str) -> str:
    """The action a button or action name stands for."""
    return find_button(name).action if name not in ACTIONS else name


def press(parent: Job, index: int | None, name: str, limits: FollowUpLimits) -> ImageRequest:
    """The request a chat button `name` makes from image `index` of `parent`."""
    button = find_button(name)
    return follow_up(parent, index, button.action, limits, factor=button.factor,
                     direction=button.direction)


def parent_image(parent: Job, index: int | None) -> tuple[str, int, tuple[int, int]]:
    """(storage name, seed, size) of image `index` of a finished job, or a PromptError."""
    if not parent.status.finished:
        raise _not_ready(parent)
    if parent.status is not JobStatus.done or not parent.images:
        why = (_("That job has no images (it failed); try {action} instead.")
               if parent.status is JobStatus.failed else
               _("That job has no images (it was cancelled); try {action} instead."))
        raise NoImages(why.format(action=REROLL))
    if index is None or not 0 <= index < len(parent.images):
        shown = _("none") if index is None else index
        raise PromptError(_("That job has no image {index}: pick 0 to {last} (the buttons show "
                            "1 to {count}).").format(index=shown, last=len(parent.images) - 1,
                                                     count=len(parent.images)))
    seed = parent.seeds[index] if index < len(parent.seeds) else parent.request.seed
    return parent.images[index], seed or 0, parent.image_size(index)


def follow_up(parent: Job, index: int | None, action: str, limits: FollowUpLimits, *,
              factor: float | None = None, direction: str | None = None) -> ImageRequest:
    """The request of `action` on image `index` (0-based) of `parent`.

    - reroll: the same request with a new seed (also for a failed or cancelled job);
    - vary_subtle / vary_strong: img2img from the image, a new seed, the parent's image count
      (a grid of variations, as the parent was a grid: the user chose how many with --n);
    - upscale / upscale_creative: upscale_factor × each side, capped by
      IMAGINE_MAX_UPSCALE_PIXELS (the result says so), the image's own seed;
    - zoom_out (factor 1.5 or 2) and pan (a direction): outpainting, within IMAGINE_MAX_PIXELS
      (scaled down to fit, and said so).
    """
    action = canonical_action(action)
    if action == ENHANCE:
        if not limits.enhance:
            raise PromptError(_(NO_ENHANCER))
        if not parent.status.finished:
            raise _not_ready(parent)
        return parent.request.model_copy(update={"seed": None, "enhance": True})
    if action == REROLL:
        if not parent.status.finished:
            raise _not_ready(parent)
        return parent.request.model_copy(update={"seed": None})
    source, seed, (width, height) = parent_image(parent, index)
    request = parent.request.model_copy(update={"width": width, "height": height})
    if action in VARY_STRENGTHS:
        return request.varied(source, VARY_STRENGTHS[action])
    if action in (UPSCALE, UPSCALE_CREATIVE):
        planned = upscale_size(width, height, limits.upscale_factor, limits.max_upscale_pixels)
        return request.upscaled(source, seed, planned.width, planned.height,
                                limits.upscale_factor, creative=action == UPSCALE_CREATIVE)
    if action == ZOOM_OUT:
        zoom = _zoom_factor(factor)
        planned = grown_size(zoom_canvas(width, height, zoom), limits.max_pixels)
        return request.zoomed_out(source, seed, planned.width, planned.height, zoom)
    side = _direction(direction)
    planned = grown_size(pan_canvas(width, height, side), limits.max_pixels)
    return request.panned(source, seed, planned.width, planned.height, side)


# A job's state as a word of a sentence; the state's value stays the English identifier.
STATUS_WORDS = {JobStatus.queued: N_("queued"), JobStatus.running: N_("running"),
                JobStatus.done: N_("done"), JobStatus.failed: N_("failed"),
                JobStatus.cancelled: N_("cancelled")}


def _not_ready(parent: Job) -> JobNotReady:
    return JobNotReady(_("That job is still {status}; wait until it is done, then try "
                         "again.").format(status=_(STATUS_WORDS[parent.status])))


def _zoom_factor(factor: float | None) -> float:
    if factor is None:
        return DEFAULT_ZOOM
    if float(factor) not in ZOOM_FACTORS:
        raise PromptError(_("factor must be 1.5 or 2 for zoom_out, not {factor}.").format(
            factor=repr(factor)))
    return float(factor)


def _direction(direction: str | None) -> Direction:
    for known in DIRECTIONS:
        if direction == known:
            return known
    if direction is None:
        raise PromptError(_("pan needs a direction: left, right, up or down (none given)."))
    raise PromptError(_("pan needs a direction: left, right, up or down (not {given}).").format(
        given=repr(direction)))

