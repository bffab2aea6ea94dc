"""Report and Delete under a Discord result (bots/reports.py says who may do what).

Report posts to IMAGINE_DISCORD_REPORT_CHANNEL: who reported, whose result, the prompt, a
link to the result message and the image. Delete removes the message the button is on (the
result) and the stored images (tasks/policy/removal.py). Answers are ephemeral.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import TYPE_CHECKING

import discord

from bots.discord.buttons import send_ephemeral
from bots.followups import DELETE, REPORT
from bots.permissions import discord_role, may_delete
from bots.reports import Reports, delete_refusal, deleted_text, report_text, thanks
from tasks.core.jobs import Job
from tasks.errors import JobNotFound
from tasks.policy.removal import remove_job

if TYPE_CHECKING:
    from bots.discord.bot import ImagineBot

log = logging.getLogger(__name__)

MANAGED = (REPORT, DELETE)


async def manage_button(bot: ImagineBot, interaction: discord.Interaction, name: str,
                        job: Job, index: int) -> None:
    """A press of Report or Delete on `job`'s result."""
    if name == REPORT:
        await _report(bot, interaction, job, index)
    else:
        await _delete(bot, interaction, job)


async def _report(bot: ImagineBot, interaction: discord.Interaction, job: Job,
                  index: int) -> None:
    channel = bot.settings.discord_report_channel
    link = interaction.message.jump_url if interaction.message else ""
    reports = Reports(bot.settings, bot.queue.redis)
    first = await asyncio.to_thread(reports.report, job, f"discord:{interaction.user.id}",
                                    index, link)
    if first and channel:
        text = report_text(job, f"<@{interaction.user.id}>", f"<@{job.requester.user}>",
                           index, link)
        try:
            await _post_report(bot, int(channel), job, index, text)
        except (discord.HTTPException, ValueError) as exc:  # in the audit all the same
            log.warning("report of job %s not posted to %s: %s", job.id, channel, exc)
    await send_ephemeral(interaction, thanks(bool(channel)))


async def _post_report(bot: ImagineBot, channel_id: int, job: Job, index: int,
                       text: str) -> None:
    storage = bot.uploads.storage
    files = []
    if index < len(job.images) and await asyncio.to_thread(storage.exists, job.images[index]):
        data = await asyncio.to_thread(storage.read, job.images[index])
        files.append(discord.File(io.BytesIO(data), filename=f"reported-{job.id}.png"))
    await bot.get_partial_messageable(channel_id).send(
        text, files=files, allowed_mentions=discord.AllowedMentions.none())


async def _delete(bot: ImagineBot, interaction: discord.Interaction, job: Job) -> None:
    permissions = interaction.permissions
    user = str(interaction.user.id)
    if not may_delete(job, user, lambda: discord_role(
            manage_messages=permissions.manage_messages,
            manage_guild=permissions.manage_guild)):
        await send_ephemeral(interaction, delete_refusal(f"<@{job.requester.user}>"))
        return
    if interaction.message is not None:
        try:
            await interaction.message.delete()
        except discord.HTTPException as exc:  # gone already, or not ours to delete
            log.info("result message of job %s not deleted: %s", job.id, exc)
    try:
        await asyncio.to_thread(remove_job, bot.settings, bot.queue.redis, bot.uploads.storage,
                                job.id, f"discord:{user}")
    except JobNotFound:
        pass  # expired meanwhile: nothing else is left
    await send_ephemeral(interaction, deleted_text())
