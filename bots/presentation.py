"""How every chat front end shows a job: shortened prompts, progress bars, places in line.

Only what reads the same on every platform lives here; each platform's own markup (Slack's
escapes, Discord's markdown) stays in its package and is applied after these.
"""

from __future__ import annotations

from settings.i18n import _

# Characters of a prompt repeated in a status line: enough to recognise it, never a wall.
PROMPT_SHOWN = 300
BAR_WIDTH = 10


def shorten(text: str, limit: int = PROMPT_SHOWN) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_bar(step: int, total: int, width: int = BAR_WIDTH) -> str:
    """`▰▰▰▱▱▱▱▱▱▱` for step 3 of 10; full once the last step is done."""
    filled = round(width * min(1.0, step / total)) if total > 0 else 0
    return "▰" * filled + "▱" * (width - filled)


def percent(step: int, total: int) -> int:
    return round(100 * min(1.0, step / total)) if total > 0 else 0


def place_in_line(position: int) -> str:
    return _("next in line") if position <= 1 else _("#{position} in line").format(
        position=position)
