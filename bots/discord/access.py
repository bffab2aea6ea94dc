"""Who may use the bot where on Discord, checked before a job is built (servers, channels,
roles, DMs: tasks/policy/access.py), and the blocklist checked before a prompt is shown in
the channel: a refused prompt is never posted as "queued", even for a moment.

Refusals of slash commands and buttons are ephemeral (only the user sees them); a mention is
answered in place, as a reply.
"""

from __future__ import annotations

import asyncio

import discord

from bots.discord.requesters import message_extra
from generator.request import ImageRequest
from settings import Settings
from tasks.core.jobs import Job, Requester
from tasks.core.queue import JobQueue
from tasks.errors import AccessDenied, PolicyRefusal
from tasks.policy.access import check_access, refused_job


class Private(str):
    """A refusal for the requester's eyes only (ephemeral), not for the channel."""

    __slots__ = ()


def parent_channel(channel: object) -> str:
    """The channel a thread belongs to (its rules are the channel's), else ""."""
    parent = getattr(channel, "parent_id", None)
    return str(parent) if parent else ""


def message_requester(message: discord.Message) -> Requester:
    return Requester(platform="discord", user=str(message.author.id),
                     channel=str(message.channel.id), thread=str(message.id),
                     extra=message_extra(message))


class DiscordAccess:
    def __init__(self, settings: Settings, queue: JobQueue) -> None:
        self.settings = settings
        self.queue = queue

    async def refusal(self, requester: Requester, channel: object,
                      request: ImageRequest | None = None, prompt: str = "") -> Private | None:
        """Why `requester` may not use the bot here, or why `request`'s prompt is refused
        (audited, with ⚠️), else None."""

        def check() -> Private | None:
            job = (refused_job(requester, prompt) if request is None
                   else Job(requester=requester, request=request))
            try:
                check_access(self.settings, requester, parent_channel=parent_channel(channel))
                if request is not None:
                    self.queue.policy.check_prompt(job, request.prompt, request.negative_prompt)
            except (AccessDenied, PolicyRefusal) as exc:
                self.queue.policy.refused(job, exc)
                return Private(f"⚠️ {exc.message}")
            return None

        return await asyncio.to_thread(check)  # the audit is a Redis call: off the event loop

    async def stops(self, interaction: discord.Interaction, requester: Requester,
                    request: ImageRequest | None = None) -> bool:
        """True, and the user told privately, when the interaction may not go on."""
        refusal = await self.refusal(requester, interaction.channel, request)
        if refusal is None:
            return False
        await tell_privately(interaction, refusal)
        return True


async def tell_privately(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer; after a public deferral the "thinking…" message goes first."""
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        pass  # already gone: the ephemeral message still says why
    await interaction.followup.send(text, ephemeral=True)
