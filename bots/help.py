"""What `/imagine help` (Slack) and `/help` (Discord) answer: the grammar, the buttons under
a result and a few examples, for the asker's eyes only. A bare `/imagine` on Slack says the
same, so nobody is left guessing and nothing is drawn from the word "help"."""

from __future__ import annotations

from dataclasses import dataclass

from bots.grammar import USAGE
from settings.i18n import N_, _

EXAMPLES = (
    "a red fox in snow --ar 16:9",
    "a lighthouse at dusk, oil painting --seed 7 --no people",
    "a bowl of ramen, studio photo --n 4 --steps 30",
)

# The buttons under a finished image (bots.followups), in the order they appear.
BUTTONS = (
    (N_("Upscale (Subtle) / (Creative)"), N_("a larger image; Creative also adds new detail")),
    (N_("Vary (Subtle) / (Strong)"), N_("the same picture redrawn a little / a lot")),
    (N_("Vary (Region)"), N_("paint the part to redraw on a web page, say what goes there")),
    (N_("Zoom Out 2x / 1.5x"), N_("the picture on a larger canvas, the new area drawn")),
    ("⬅️ ➡️ ⬆️ ⬇️", N_("the picture extended that way")),
    (N_("Reroll"), N_("the same prompt with a new seed")),
    ("U1…U4 · V1…V4", N_("under a grid of images: upscale or vary that one")),
    (N_("Cancel"), N_("stops your job while it waits or draws")),
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
                    N_("`/recall` (or the Recall menu on a message) shows how an image was made "
                       "and draws it again."))


def help_text(style: HelpStyle) -> str:
    """The help, in the chat's markup (kept well under Discord's 2,000 characters), in the
    current language (labels without letters, like the arrows, are shown as they are)."""
    b = style.bold
    lines = [
        _("{b}{draw} PROMPT [flags]{b} draws PROMPT; the image arrives here, with buttons."
          ).format(b=b, draw=style.draw),
        _(USAGE),
        "",
        _("{b}Examples{b}").format(b=b),
        *(f"• `{style.draw} {example}`" for example in EXAMPLES),
        "",
        _("{b}Buttons under a result{b}").format(b=b),
        *(f"• {_(label) if label.isascii() else label}: {_(meaning)}"
          for label, meaning in BUTTONS),
        "",
        _("{listing} lists the models, LoRAs, embeddings and ControlNets you can use."
          ).format(listing=style.listing),
    ]
    if style.recall:
        lines.append(_(style.recall))
    return "\n".join(lines)
