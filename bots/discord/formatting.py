"""What the Discord bot and the Discord deliverer both write: texts, button ids, components.

Plain data only (no discord.py import): the deliver worker builds raw REST payloads from
it, the bot process builds discord.py views from the same ids, so a button posted by one
process is understood by the other, and by either after a restart.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from bots.followups import BUTTON_NAMES, REROLL, REVEAL, Button, button_label, result_rows
from bots.followups import title as action_title
from bots.grammar import format_request
from bots.language_view import language_lines
from bots.limits import Limits
from bots.presentation import percent, place_in_line, progress_bar, shorten
from generator.request import SAMPLER_LABELS
from settings.i18n import _, ngettext
from tasks.core.jobs import Job, JobStatus, Requester

# Discord lets an interaction token be used for 15 minutes; stop a little early so a slow
# upload that starts in time does not end after the token died.
INTERACTION_TOKEN_SECONDS = 15 * 60
TOKEN_MARGIN_SECONDS = 60
CONTENT_LIMIT = 2000  # characters of a message's content
BUTTONS_PER_ROW = 5

# A custom id carries a button's name (bots.followups.BUTTON_NAMES, which keeps the names
# of buttons posted by earlier releases: `vary`), Cancel, or Run again. Run again carries a
# recall id (tasks.core.recalls) where the others carry a job id: both are hex.
CANCEL, RUN_AGAIN = "cancel", "run_again"
ACTIONS = tuple(dict.fromkeys((*BUTTON_NAMES, CANCEL, RUN_AGAIN)))
CUSTOM_ID_PATTERN = (
    rf"imagine:(?P<action>{'|'.join(sorted(ACTIONS, key=len, reverse=True))}):"
    r"(?P<job>[0-9a-f]{8,64}):(?P<index>[0-9]{1,2})"
)
_CUSTOM_ID = re.compile(CUSTOM_ID_PATTERN)

# Button styles of Discord's component API.
PRIMARY, SECONDARY, DANGER = 1, 2, 4


def custom_id(action: str, job_id: str, index: int = 0) -> str:
    """The button id that carries everything a press needs: the job, the action, the image."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return f"imagine:{action}:{job_id}:{index}"


def parse_custom_id(value: str) -> tuple[str, str, int] | None:
    match = _CUSTOM_ID.fullmatch(value)
    if match is None:
        return None
    return match["action"], match["job"], int(match["index"])


def no_pings(requester: Requester) -> dict[str, Any]:
    """allowed_mentions for everything we post: only the requester may be pinged."""
    users = [requester.user] if requester.user.isdigit() else []
    return {"parse": [], "users": users, "replied_user": False}


def nonce(job_id: str, step: str) -> str:
    """Discord's message nonce (at most 25 characters): the same for a retried step."""
    return hashlib.sha256(f"{job_id}:{step}".encode()).hexdigest()[:25]


def token_valid(requester: Requester, now: float | None = None) -> bool:
    """Whether the interaction token of this job can still be used for followups and edits."""
    token = requester.extra.get("interaction_token")
    created = requester.extra.get("interaction_created")
    if not token or not created:
        return False
    age = (time.time() if now is None else now) - float(created)
    return age < INTERACTION_TOKEN_SECONDS - TOKEN_MARGIN_SECONDS


def attachment_limit(requester: Requester, configured: int) -> int:
    """The upload limit: what the interaction told us, capped by the configured one."""
    told = requester.extra.get("attachment_limit", "")
    return min(int(told), configured) if told.isdigit() else configured


def _quoted(text: str) -> str:
    # Backticks would end the code span early; a lookalike keeps the prompt readable.
    return text.replace("`", "ˋ")


# Markdown that a prompt echoed in bold could use: emphasis, spoilers, quotes, masked links
# `[text](https://…)`, `<https://…>`, custom emoji and mentions `<@…>`. A backslash shows
# the character itself; `://` escaped keeps a bare URL from becoming a link.
_MARKDOWN = re.compile(r"([\\*_~|>\[\]()<])")


def _shown(prompt: str) -> str:
    """A prompt as plain text inside `**…**`: Discord renders no link, emphasis or mention."""
    return _MARKDOWN.sub(r"\\\1", _quoted(shorten(prompt))).replace("://", "\\://")


# --- status messages ------------------------------------------------------------------


def queued_text(prompt: str, position: int, wait: str) -> str:
    where = place_in_line(position)
    return _("🎨 **{shown}**\nQueued: {where}, done in {wait}.").format(
               shown=_shown(prompt), where=where, wait=wait)


def progress_text(job: Job, position: int | None) -> str:
    head = f"🎨 **{_shown(job.request.prompt)}**\n"
    if job.status is JobStatus.queued and position is not None:
        return head + _("Queued: {where}.").format(where=place_in_line(position))
    if job.phase:
        return head + job.phase[:1].upper() + job.phase[1:]
    if not job.total_steps:
        return head + _("Starting…")
    bar = progress_bar(job.step, job.total_steps)
    return head + _("Drawing {bar} {percent}% (step {step}/{total})").format(
        bar=bar, percent=percent(job.step, job.total_steps), step=job.step,
        total=job.total_steps)


def finished_text(job: Job) -> str:
    """The status message's last words for a job without images."""
    prompt = _shown(job.request.prompt)
    if job.status is JobStatus.cancelled:
        return f"🛑 **{prompt}**\n" + _("Cancelled.")
    return f"⚠️ **{prompt}**\n{job.error or _('Generation failed.')}"


def cancel_components(job_id: str) -> list[dict[str, Any]]:
    return [{"type": 1, "components": [
        {"type": 2, "style": SECONDARY, "label": _("Cancel"),
         "custom_id": custom_id("cancel", job_id)}]}]


# --- results --------------------------------------------------------------------------

def result_content(job: Job, limits: Limits, notes: list[str]) -> str:
    """Who asked, what was drawn and how to draw it again; within Discord's 2000 characters."""
    request = job.request
    title = action_title(job.action, request)
    mention = f"<@{job.requester.user}> " if job.requester.user.isdigit() else ""
    lines = [f"{mention}{title + ': ' if title else ''}"
             f"**{_shown(request.prompt)}**"]
    sampler = SAMPLER_LABELS.get(request.sampler, request.sampler)
    seeds = ", ".join(str(seed) for seed in job.seeds)
    width, height = job.image_size(0)  # an operation's result may be capped below the plan
    lines.append(ngettext(
        "{width}×{height} · {steps} steps · cfg {cfg:g} · {sampler} · model {model} · "
        "seed {seeds}",
        "{width}×{height} · {steps} steps · cfg {cfg:g} · {sampler} · model {model} · "
        "seeds {seeds}", max(len(job.seeds), 1)).format(
            width=width, height=height, steps=request.num_inference_steps,
            cfg=request.guidance_scale, sampler=sampler, model=request.model, seeds=seeds))
    if job.seeds and request.mode == "txt2img":
        again = format_request(request.model_copy(update={"num_images": 1}).with_seed(
            job.seeds[0]), limits)
        line = _("Again: `{prompt}`").format(prompt=_quoted(again))
        if len(line) <= 700:
            lines.append(line)
    lines.extend(language_lines(job))  # the prompt as written, when translated or enhanced
    lines.extend(job.notes)  # what the worker must tell: scaled down, no upscaler, …
    lines.extend(notes)
    text = "\n".join(lines)
    return text if len(text) <= CONTENT_LIMIT else text[: CONTENT_LIMIT - 1] + "…"


def result_components(job: Job, *, enhance: bool = False) -> list[dict[str, Any]]:
    """bots.followups.result_rows as Discord components: U1..Un / V1..Vn / Reroll under a
    grid, every operation under one image (at most 5 rows of 5). No Show original: Discord
    shows a spoilered image as a spoiler, which a click reveals."""
    return [{"type": 1, "components": [_button(button, index, job) for button, index in row
                                       if button.name != REVEAL]}
            for row in result_rows(job, enhance=enhance)]


def _button(button: Button, index: int, job: Job) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": 2, "style": PRIMARY if button.name == REROLL else SECONDARY,
        "custom_id": custom_id(button.name, job.id, index)}
    label = button_label(button, index, job)
    if label:  # the arrows of Pan are emoji only
        component["label"] = label
    if button.emoji:
        component["emoji"] = {"name": button.emoji}
    return component


def run_again_components(recall_id: str) -> list[dict[str, Any]]:
    """The button under a recalled image's parameters: draw them again."""
    return [{"type": 1, "components": [
        {"type": 2, "style": PRIMARY, "label": _("Run again"), "emoji": {"name": "🔁"},
         "custom_id": custom_id(RUN_AGAIN, recall_id)}]}]
