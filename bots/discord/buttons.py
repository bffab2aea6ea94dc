"""The bot's persistent buttons: every job button and Run again, rebuilt from custom ids.

Registered as one DynamicItem at start-up, so a button on a week-old message still works
whichever process posted it (the deliver worker posts result buttons as raw components from
bots.discord.formatting; this class answers their presses). The press itself is handled by
the client that received it, through the `ButtonHandler` protocol, so this module does not
import the bot.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

import discord

from bots.discord.formatting import CANCEL, CUSTOM_ID_PATTERN, RUN_AGAIN, custom_id
from bots.followups import BUTTONS, LEGACY_BUTTONS
from settings.i18n import _, set_locale


@runtime_checkable
class ButtonHandler(Protocol):
    """What the client does with a press: `name` is the button's name, `target` the job id
    (the recall id for Run again), `index` the image."""

    async def on_job_button(self, interaction: discord.Interaction, name: str, target: str,
                            index: int) -> None: ...


def _label(name: str, index: int) -> str:
    if name == CANCEL:
        return _("Cancel")
    if name == RUN_AGAIN:
        return _("Run again")
    button = BUTTONS.get(name) or LEGACY_BUTTONS[name]
    return _(button.label) if button.label else button.emoji or name


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID_PATTERN):
    """Every job button; rebuilt from its custom id on each press."""

    def __init__(self, name: str, target: str, index: int = 0) -> None:
        super().__init__(discord.ui.Button(label=_label(name, index),
                                           custom_id=custom_id(name, target, index)))
        self.name = name
        self.target = target
        self.index = index

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str],
                             ) -> JobButton:
        return cls(match["action"], match["job"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        """Hand the press to the bot that received it, in the presser's language (each
        press runs in its own asyncio task)."""
        set_locale(str(interaction.locale.value))
        client = interaction.client
        assert isinstance(client, ButtonHandler)
        await client.on_job_button(interaction, self.name, self.target, self.index)


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(CANCEL, job_id))
    return view


def run_again_view(recall_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(RUN_AGAIN, recall_id))
    return view


async def send_ephemeral(interaction: discord.Interaction, text: str,
                         view: discord.ui.View | None = None) -> None:
    """A reply only the person who pressed or typed sees."""
    extra: dict[str, Any] = {"view": view} if view is not None else {}
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, **extra)
    else:
        await interaction.response.send_message(text, ephemeral=True, **extra)
