"""Show original on Discord (#15). Discord shows a spoilered image as a SPOILER_ attachment,
so results there carry no Show original button; one pressed anyway (a result made for
another destination, an older message) answers the requester alone with the originals as
an ephemeral attachment, and anyone else with an ephemeral refusal. Audited image.revealed.
"""

from __future__ import annotations

import asyncio
import io

import discord
import redis

from bots.discord.buttons import send_ephemeral
from bots.safety_view import may_reveal, nothing_to_reveal, reveal_refusal, spoilered
from settings import Settings
from settings.i18n import _
from tasks.core.jobs import Job
from tasks.core.storage import ImageStore
from tasks.policy.audit import AuditLog
from tasks.policy.gate import job_entry

MAX_FILES = 10  # attachments Discord takes in one message


async def reveal_original(interaction: discord.Interaction, job: Job, storage: ImageStore,
                          settings: Settings, client: redis.Redis) -> None:
    """The presser's answer to Show original under `job`."""
    if not may_reveal(job, str(interaction.user.id)):
        await send_ephemeral(interaction, reveal_refusal())
        return
    indexes = spoilered(job)[:MAX_FILES]
    if not indexes:
        await send_ephemeral(interaction, nothing_to_reveal())
        return
    seeds = job.seeds or [job.request.seed or 0] * len(job.images)

    def read_and_audit() -> list[discord.File]:
        files = [discord.File(io.BytesIO(storage.read(job.images[i])),
                              filename=f"imagine-{seeds[i]}.png") for i in indexes]
        audit = AuditLog(settings, client)
        for index in indexes:
            audit.record(job_entry("image.revealed", job, outcome="revealed",
                                   actor=job.requester.user_key,
                                   nsfw_score=job.verdict(index).score,
                                   detail=f"image {index + 1} to the requester"))
        return files

    files = await asyncio.to_thread(read_and_audit)
    text = _("The original, for your eyes only.")
    if interaction.response.is_done():
        await interaction.followup.send(text, files=files, ephemeral=True)
    else:
        await interaction.response.send_message(text, files=files, ephemeral=True)
