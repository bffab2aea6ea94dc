"""What `/imagine help` (Slack) and `/help` (Discord) answer: the grammar, the buttons under
a result and a few examples, for the asker's eyes only. A bare `/imagine` on Slack says the
same, so nobody is left guessing and nothing is drawn from the word "help"."""

from __future__ import annotations

from dataclasses import dataclass

from bots.grammar import USAGE

EXAMPLES = (
    "a red fox in snow --ar 16:9",
    "a lighthouse at dusk, oil painting --seed 7 --no people",
    "a bowl of ramen, studio photo --n 4 --steps 30",
)

# The buttons under a finished image (bots.followups), in the order they appear.
BUTTONS = (
    ("Upscale (Subtle) / (Creative)", "a larger image; Creative also adds new detail"),
    ("Vary (Subtle) / (Strong)", "the same picture redrawn a little / a lot"),
    ("Vary (Region)", "paint the part to redraw on a web page, say what goes there"),
    ("Zoom Out 2x / 1.5x", "the picture on a larger canvas, the new area drawn"),
    ("⬅️ ➡️ ⬆️ ⬇️", "the picture extended that way"),
    ("Reroll", "the same prompt with a new seed"),
    ("U1…U4 · V1…V4", "under a grid of images: upscale or vary that one"),
    ("Cancel", "stops your job while it waits or draws"),
)


@dataclass(frozen=True)
class HelpStyle:
    """How a chat spells things: its bold marker and its own commands."""

    bold: str
    draw: str  # the command that draws: "/imagine"
    listing: str  # how to list models, LoRAs and ControlNets
    recall: str  # how to see how an image was made ("" where there is no such command)


SLACK = HelpStyle("*", "/imagine", "`/imagine models`", "")
DISCORD = HelpStyle("**", "/imagine", "`/models`",
                    "`/recall` (or the Recall menu on a message) shows how an image was made "
                    "and draws it again.")


def help_text(style: HelpStyle) -> str:
    """The help, in the chat's markup (kept well under Discord's 2,000 characters)."""
    b = style.bold
    lines = [
        f"{b}{style.draw} PROMPT [flags]{b} draws PROMPT; the image arrives here, with buttons.",
        USAGE,
        "",
        f"{b}Examples{b}",
        *(f"• `{style.draw} {example}`" for example in EXAMPLES),
        "",
        f"{b}Buttons under a result{b}",
        *(f"• {label}: {meaning}" for label, meaning in BUTTONS),
        "",
        f"{style.listing} lists the models, LoRAs, embeddings and ControlNets you can use.",
    ]
    if style.recall:
        lines.append(style.recall)
    return "\n".join(lines)
