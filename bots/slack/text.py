"""What the Slack bot says: escaping, status lines, upload comments and Block Kit buttons.

Everything a user wrote passes through `escape` before the bot repeats it, so a prompt
containing `<!channel>`, `<@U123>` or `<https://…|link>` is shown as text and never pings
anyone or turns into a link. Pure functions only: the listeners and the deliverer share them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bots.followups import (
    BUTTON_NAMES,
    REROLL,
    Button,
    button_label,
    result_rows,
)
from bots.followups import title as action_title
from bots.presentation import progress_bar, shorten
from bots.safety_view import ShownImage
from generator.request import ImageRequest
from settings.i18n import _
from tasks.core.jobs import Job

# Slack's own control characters; escaping these three is all Slack requires.
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_UNESCAPES = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}
# Slack markup in incoming text: <@U123>, <@U123|name>, <#C1|general>, <!here>, <url|label>.
_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
ACTION_PREFIX = "imagine:"
# An action id carries a button's name (bots.followups.BUTTON_NAMES, which keeps the names of
# buttons posted by earlier releases: `vary`), Cancel, or Run again. Run again's value is a
# recall id (tasks.core.recalls) where the others carry a job id: both are hex.
CANCEL, RUN_AGAIN = "cancel", "run_again"
ACTIONS = (*BUTTON_NAMES, CANCEL, RUN_AGAIN)


def escape(text: str) -> str:
    """User text made inert for Slack mrkdwn: no mentions, no links, no broadcasts."""
    return "".join(_ESCAPES.get(char, char) for char in text)


def unescape(text: str) -> str:
    return re.sub(r"&(amp|lt|gt);", lambda m: _UNESCAPES[m.group(0)], text)


def plain_text(slack_text: str) -> str:
    """Incoming message text as a person reads it: markup replaced by its label."""

    def readable(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if label:
            if target.startswith("#"):
                return f"#{label}"
            return f"@{label.lstrip('@')}" if target.startswith(("@", "!")) else label
        if target.startswith(("@", "#")):
            return target
        if target.startswith("!"):
            return "@" + target[1:].split("^")[0]
        return target

    return unescape(_MARKUP.sub(readable, slack_text)).strip()


def prompt_text(slack_text: str) -> str:
    """Incoming text as a prompt: `plain_text`, except that a link first is kept as its URL
    (an image prompt), whatever label Slack gave it."""
    first = re.match(r"\s*<(https?://[^<>|]+)(?:\|[^<>]*)?>", slack_text)
    if first is None:
        return plain_text(slack_text)
    return f"{unescape(first.group(1))} {plain_text(slack_text[first.end():])}".strip()


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """A mention's text without the leading `<@BOT>` that addressed the app."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    return text.strip()


# ---------------------------------------------------------------------------------------
# Status lines: "<@U1>: a red fox — queued, #3, ~40 s"


def headline(user: str, request: ImageRequest, action: str | None = None,
             index: int | None = None) -> str:
    """`@user: prompt`, plus what kind of follow-up this is."""
    user_part = f"<@{user}>: " if re.fullmatch(r"[UW][A-Z0-9]+", user) else ""
    title = action_title(action, request)
    label = ""
    if title:
        label = (_(" _({title} of image {number})_").format(title=title, number=index + 1)
                 if index is not None else f" _({title})_")
    return f"{user_part}{escape(shorten(request.prompt))}{label}"


def queued_line(position: int, wait: str) -> str:
    return _("queued, #{position}, {wait}").format(position=position, wait=wait)


def drawing_line(step: int, total: int) -> str:
    if not total:
        return _("drawing…")
    return _("drawing {bar} step {step}/{total}").format(bar=progress_bar(step, total),
                                                         step=step, total=total)


def done_line(seeds: list[int], seconds: float | None) -> str:
    seed_text = ", ".join(str(s) for s in seeds)
    if seconds is None:
        return _("done · seed {seeds} · images in the thread").format(seeds=seed_text)
    return _("done in {seconds:.1f} s · seed {seeds} · images in the thread").format(
        seconds=seconds, seeds=seed_text)


def with_notes(text: str, notes: list[str] | tuple[str, ...]) -> str:
    """`text` with what the user must know about the result, one note a line."""
    return "\n".join([text, *(f"ℹ️ {escape(note)}" for note in notes)])


def failed_line(error: str) -> str:
    return _("failed: {error}").format(error=escape(error))


def status_text(head: str, line: str) -> str:
    return f"{head} — {line}"


def not_in_channel_text(command: str = "/invite @imagine") -> str:
    return _("I can't post in this channel yet. Invite me with `{command}` (or add the app "
             "from the channel's details → Integrations), then try again.").format(
                 command=command)


# ---------------------------------------------------------------------------------------
# Upload comments: seed and parameters of the images


def parameters_line(request: ImageRequest) -> str:
    sampler = request.sampler
    mode = "" if request.mode == "txt2img" else _(" · {mode} strength {strength:g}").format(
        mode=request.mode, strength=request.strength)
    negative = _(" · no: {negative}").format(negative=escape(shorten(
        request.negative_prompt, 120))) if request.negative_prompt else ""
    return _("{width}×{height} · {steps} steps · cfg {cfg:g} · {sampler} · model {model}").format(
        width=request.width, height=request.height, steps=request.num_inference_steps,
        cfg=request.guidance_scale, sampler=sampler, model=escape(request.model),
    ) + mode + negative


def upload_comment(head: str, seeds: list[int], request: ImageRequest, replay: str,
                   notes: list[str] | tuple[str, ...] = ()) -> str:
    """The comment above the images: who, what, seeds, parameters, the text to redo it, and
    what the user must know about them (scaled down to fit, no upscaler configured)."""
    seed_text = ", ".join(str(s) for s in seeds)
    seed_line = _("seed {seeds}").format(seeds=seed_text)
    return with_notes(f"{head}\n{seed_line} · {parameters_line(request)}\n{code(replay)}", notes)


def upload_of(image: ShownImage, data: bytes) -> dict[str, Any]:
    """One image of files_upload_v2: a spoilered image goes as its blurred copy, named so."""
    if image.spoiler:
        return {"file": data, "filename": f"imagine-{image.seed}-blurred.png",
                "title": _("seed {seed} (blurred)").format(seed=image.seed)}
    return {"file": data, "filename": f"imagine-{image.seed}.png",
            "title": _("seed {seeds}").format(seeds=image.seed)}


def code(text: str) -> str:
    """User text as inline code: escaped, and no backtick can end the span early."""
    return f"`{escape(text).replace('`', 'ˋ')}`"


def recall_text(user: str, text: str, notes: tuple[str, ...] = ()) -> str:
    """A recalled image's parameters as the prompt that draws it again."""
    user_part = f"<@{user}>: " if re.fullmatch(r"[UW][A-Z0-9]+", user) else ""
    return with_notes(user_part + _("this image was drawn with\n{parameters}").format(
        parameters=code(text)), notes)


# ---------------------------------------------------------------------------------------
# Block Kit


@dataclass(frozen=True)
class ActionValue:
    """What a button carries: the action, the job it acts on, and which of its images."""

    action: str
    job_id: str
    index: int | None = None

    def encode(self) -> str:
        return self.job_id if self.index is None else f"{self.job_id}:{self.index}"

    @property
    def action_id(self) -> str:
        suffix = "" if self.index is None else f":{self.index}"
        return f"{ACTION_PREFIX}{self.action}{suffix}"

    @classmethod
    def decode(cls, action_id: str, value: str) -> ActionValue:
        """Read a clicked button back; ValueError for one this app did not make."""
        if not action_id.startswith(ACTION_PREFIX):
            raise ValueError(f"not an imagine action: {action_id!r}")
        action = action_id[len(ACTION_PREFIX):].split(":")[0]
        job_id, _, index = value.partition(":")
        if action not in ACTIONS or not re.fullmatch(r"[0-9a-f]{8,64}", job_id):
            raise ValueError(f"not an imagine action: {action_id!r} {value!r}")
        if index and not index.isdigit():
            raise ValueError(f"bad image index in {value!r}")
        return cls(action, job_id, int(index) if index else None)


def _button(text: str, value: ActionValue, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text},
                              "action_id": value.action_id, "value": value.encode()}
    if style:
        button["style"] = style
    return button


def section(text: str) -> dict[str, Any]:
    # verbatim: Slack must not turn words of the prompt into links or mentions.
    return {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}


def cancel_blocks(text: str, job_id: str) -> list[dict[str, Any]]:
    """A status line with a Cancel button, while the job waits or runs."""
    return [section(text), {"type": "actions", "block_id": "imagine-cancel", "elements": [
        _button(_("Cancel"), ActionValue(CANCEL, job_id), "danger")]}]


def result_blocks(text: str, job: Job, *, enhance: bool = False) -> list[dict[str, Any]]:
    """The finished status line with bots.followups.result_rows as actions blocks: U1..Un /
    V1..Vn / Reroll under a grid, every operation under one image (at most 5 rows of 5, far
    under Slack's 25 elements per block and 50 blocks per message)."""
    return [section(text), *({"type": "actions", "block_id": f"imagine-row-{number}",
                              "elements": [_follow_up_button(button, index, job)
                                           for button, index in row]}
                             for number, row in enumerate(result_rows(job, enhance=enhance)))]


def _follow_up_button(button: Button, index: int, job: Job) -> dict[str, Any]:
    # Reroll acts on the whole job: its id stays `imagine:reroll`, as on buttons already posted.
    value = ActionValue(button.name, job.id, None if button.name == REROLL else index)
    label = f"{button.emoji} {button_label(button, index, job)}".strip()
    return _button(label, value, "primary" if button.name == REROLL else None)


def run_again_blocks(text: str, recall_id: str) -> list[dict[str, Any]]:
    """A recalled image's parameters with a button that draws them again."""
    return [section(text), {"type": "actions", "block_id": "imagine-run-again", "elements": [
        _button(_("🔁 Run again"), ActionValue(RUN_AGAIN, recall_id), "primary")]}]


def failed_blocks(text: str, job_id: str) -> list[dict[str, Any]]:
    """A failed job keeps a Reroll button to try again."""
    return [section(text), {"type": "actions", "block_id": "imagine-reroll", "elements": [
        _button("Try again", ActionValue(REROLL, job_id))]}]


def text_blocks(text: str) -> list[dict[str, Any]]:
    return [section(text)]
