"""The Discord bot: `/imagine`, @mentions and DMs, and job buttons that survive restarts.

Handlers only translate: a payload becomes an ImageRequest (the shared grammar), a Job goes
through `JobQueue.submit` on a worker thread (the event loop never blocks on Redis), and
errors become a message. Results are posted by the deliver worker (bots.discord.delivery),
not here. Buttons carry job id, action and image index in their custom id and are
registered as DynamicItems at start-up, so a button on a week-old message still works.

No `from __future__ import annotations` here: discord.py reads the /imagine options from
real annotations, whose bounds come from the settings at build time.
"""

import asyncio
import logging
import re
from typing import Any

import discord
import yarl
from discord import app_commands

from bots.discord.formatting import (
    CUSTOM_ID_PATTERN,
    custom_id,
    finished_text,
    queued_text,
)
from bots.errors import PromptError
from bots.followups import FollowUpLimits, canonical_action, follow_up
from bots.grammar import USAGE, parse, request_from_fields
from bots.limits import Limits
from bots.permissions import cancel_refusal, discord_role, may_cancel
from bots.presentation import shorten
from generator.request import SEED_MAX, ImageRequest
from settings import Settings
from settings.errors import ImagineError
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue, format_wait

log = logging.getLogger(__name__)

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "21:9")
AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices
EPHEMERAL_LIMIT = 2000


class ImagineBot(discord.Client):
    """A discord.py client with its dependencies passed in; `create_bot` builds one."""

    def __init__(self, settings: Settings, queue: JobQueue, limits: Limits) -> None:
        # No privileged intents: Discord sends the content of messages that mention the bot
        # and of DMs anyway, and that is all we read.
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none(),
                         guild_ready_timeout=settings.discord_ready_timeout,
                         max_messages=None)
        self.settings = settings
        self.queue = queue
        self.limits = limits
        self.tree = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        """Register the command tree and the persistent job buttons before connecting."""
        self.tree.add_command(imagine_command(self.limits))
        self.tree.error(on_command_error)
        self.add_dynamic_items(JobButton)

    async def on_ready(self) -> None:
        """Log who we are once the gateway session is ready."""
        log.info("Discord bot ready as %s (id %s) in %d guilds", self.user,
                 self.user.id if self.user else "?", len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        """A DM, or a message mentioning the bot, is a prompt; the answer is a reply to it."""
        if message.author.bot or self.user is None:
            return
        if message.guild is not None and not self._mentioned(message):
            return
        await self.start_from_message(message, self._without_mentions(message))

    # --- jobs from messages ----------------------------------------------------------------
    def _mentioned(self, message: discord.Message) -> bool:
        # Not user.mentioned_in(): that is also true for @everyone.
        assert self.user is not None
        if any(user.id == self.user.id for user in message.mentions):
            return True
        own_role = message.guild.self_role if message.guild else None
        return own_role is not None and own_role.id in message.raw_role_mentions

    def _without_mentions(self, message: discord.Message) -> str:
        assert self.user is not None
        text = re.sub(rf"<@!?{self.user.id}>", " ", message.content)
        own_role = message.guild.self_role if message.guild else None
        if own_role is not None:
            text = text.replace(f"<@&{own_role.id}>", " ")
        return text.strip()

    async def start_from_message(self, message: discord.Message, text: str) -> None:
        try:
            request = parse(text, self.limits)
        except PromptError as exc:
            await message.reply(usage_message(exc), mention_author=False)
            return
        job = Job(request=request, requester=Requester(
            platform="discord", user=str(message.author.id), channel=str(message.channel.id),
            thread=str(message.id),
            extra={"guild_id": str(message.guild.id) if message.guild else ""}))
        text = queued_text(request.prompt, *await self._estimate())
        status = await message.reply(text, view=cancel_view(job.id), mention_author=False)
        job = with_status_message(job, str(status.id))
        error = await self._submit(job)
        if error is not None:
            await status.edit(content=error, view=None)

    # --- jobs from interactions ------------------------------------------------------------
    async def start_from_interaction(self, interaction: discord.Interaction,
                                     request: ImageRequest, parent: Job | None = None,
                                     action: str | None = None) -> None:
        """Defer (Discord allows 3 s), show the place in line, then submit."""
        await interaction.response.defer(thinking=True)
        job = Job(request=request, requester=interaction_requester(interaction),
                  parent=parent.id if parent else None, action=action)
        text = queued_text(request.prompt, *await self._estimate())
        try:
            status = await interaction.edit_original_response(content=text,
                                                              view=cancel_view(job.id))
            job = with_status_message(job, str(status.id))
        except discord.HTTPException as exc:
            # The deliverer still reaches the original response through the token.
            log.warning("could not show the queue position: %s", exc)
        error = await self._submit(job)
        if error is not None:
            await interaction.edit_original_response(content=error, view=None)

    async def _estimate(self) -> tuple[int, str]:
        """Place in line and wait for a job submitted now."""
        # Shown before submitting, so the status message exists (and its id is in the job)
        # before any worker can edit or remove it.

        def estimate() -> tuple[int, str]:
            position = self.queue.queued_count() + 1
            return position, format_wait(self.queue.estimate_wait(position))

        return await asyncio.to_thread(estimate)

    async def _submit(self, job: Job) -> str | None:
        """Submit off the event loop; the message for the user when it was refused."""
        try:
            await asyncio.to_thread(self.queue.submit, job)
        except ImagineError as exc:
            return f"⚠️ {exc.message}"
        except Exception:
            log.exception("submitting job %s failed", job.id)
            return "⚠️ The queue cannot be reached right now; try again in a minute."
        return None

    async def on_job_button(self, interaction: discord.Interaction, action: str, job_id: str,
                            index: int) -> None:
        """Reroll, V1..Vn, U1..Un: a new job from an old one; Cancel: stop it."""
        parent = await asyncio.to_thread(self.queue.jobs.find, job_id)
        if parent is None:
            await send_ephemeral(interaction, "That job has expired; start a new one with "
                                 "/imagine.")
            return
        if action == "cancel":
            await self._cancel(interaction, parent)
            return
        try:
            action = canonical_action(action)
            request = follow_up(parent, index, action, FollowUpLimits.from_settings(self.settings))
        except PromptError as exc:
            await send_ephemeral(interaction, exc.message)
            return
        await self.start_from_interaction(interaction, request, parent, action)

    async def _cancel(self, interaction: discord.Interaction, job: Job) -> None:
        permissions = interaction.permissions
        if not may_cancel(job, str(interaction.user.id), lambda: discord_role(
                manage_messages=permissions.manage_messages,
                manage_guild=permissions.manage_guild)):
            await send_ephemeral(interaction, cancel_refusal())
            return
        job = await asyncio.to_thread(self.queue.cancel, job.id)
        if job.status is JobStatus.cancelled:
            await interaction.response.edit_message(content=finished_text(job), view=None)
        elif job.status is JobStatus.running:
            await interaction.response.edit_message(content="🛑 Stopping…", view=None)
        else:
            await send_ephemeral(interaction, "That job has already finished.")


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID_PATTERN):
    """Every job button; rebuilt from its custom id on each press, whichever process made it."""

    def __init__(self, action: str, job_id: str, index: int = 0) -> None:
        label = {"cancel": "Cancel", "reroll": "Reroll", "upscale": f"U{index + 1}",
                 "vary_strong": f"V{index + 1}+"}.get(action, f"V{index + 1}")
        super().__init__(discord.ui.Button(label=label,
                                           custom_id=custom_id(action, job_id, index)))
        self.action = action
        self.job_id = job_id
        self.index = index

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: "re.Match[str]",
                             ) -> "JobButton":
        return cls(match["action"], match["job"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        """Hand the press to the bot that received it."""
        client = interaction.client
        assert isinstance(client, ImagineBot)
        await client.on_job_button(interaction, self.action, self.job_id, self.index)


async def on_command_error(interaction: discord.Interaction,
                           error: app_commands.AppCommandError) -> None:
    """Anything a handler did not turn into a message: log it, tell the user briefly."""
    log.error("/%s failed", interaction.command.name if interaction.command else "?",
              exc_info=error)
    try:
        await send_ephemeral(interaction, "⚠️ Something went wrong on our side; the operator "
                             "can find the details in the bot's log.")
    except discord.HTTPException:
        pass  # the interaction itself is gone; the log has it


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job_id))
    return view


def imagine_command(limits: Limits) -> app_commands.Command[Any, Any, None]:
    """`/imagine` with typed options whose bounds are this deployment's limits."""

    @app_commands.command(name="imagine")
    @app_commands.describe(
        prompt="What to draw; flags such as --ar 16:9 --seed 7 --no text work here too",
        aspect_ratio="Shape of the image", seed="Same seed + same prompt = same image",
        steps="More steps: slower, often finer", negative="What to leave out",
        count="How many images", model="Which model draws it")
    @app_commands.choices(aspect_ratio=[app_commands.Choice(name=r, value=r)
                                        for r in ASPECT_RATIOS])
    async def imagine(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        aspect_ratio: str | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        steps: app_commands.Range[int, 1, limits.max_steps] | None = None,
        negative: app_commands.Range[str, 1, 6000] | None = None,
        count: app_commands.Range[int, 1, limits.max_images] | None = None,
        model: str | None = None,
    ) -> None:
        """Draw an image from a prompt."""
        client = interaction.client
        assert isinstance(client, ImagineBot)
        fields = {"prompt": prompt, "ar": aspect_ratio, "seed": seed, "steps": steps,
                  "no": negative, "n": count, "model": model}
        try:
            request = request_from_fields(fields, client.limits)
        except PromptError as exc:
            await send_ephemeral(interaction, usage_message(exc))
            return
        await client.start_from_interaction(interaction, request)

    @imagine.autocomplete("model")
    async def model_names(interaction: discord.Interaction, current: str
                          ) -> list[app_commands.Choice[str]]:
        """The allowed models whose name contains what was typed."""
        names = [n for n in limits.models if current.casefold() in n.casefold()]
        return [app_commands.Choice(name=n, value=n) for n in names[:AUTOCOMPLETE_LIMIT]]

    return imagine


def interaction_requester(interaction: discord.Interaction) -> Requester:
    return Requester(
        platform="discord", user=str(interaction.user.id),
        channel=str(interaction.channel_id or ""),
        extra={"application_id": str(interaction.application_id),
               "interaction_token": interaction.token,
               "interaction_created": f"{interaction.created_at.timestamp():.3f}",
               "guild_id": str(interaction.guild_id or ""),
               "attachment_limit": str(interaction.filesize_limit)})


def with_status_message(job: Job, message_id: str) -> Job:
    requester = job.requester.model_copy(update={"message": message_id})
    return job.model_copy(update={"requester": requester})


def usage_message(error: PromptError) -> str:
    return shorten(f"⚠️ {error.message}", EPHEMERAL_LIMIT - len(USAGE) - 2) + "\n\n" + USAGE


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


def create_bot(settings: Settings, queue: JobQueue, limits: Limits | None = None
               ) -> ImagineBot:
    """The bot with its dependencies; nothing connects until it is started."""
    return ImagineBot(settings, queue, limits or Limits.from_settings(settings))


def point_at(settings: Settings) -> None:
    """Send REST and gateway traffic to DISCORD_API_URL / DISCORD_GATEWAY_URL when set."""
    if settings.discord_api_url:
        discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def _token(settings: Settings) -> str:
    if settings.discord_token is None:
        raise ImagineError("DISCORD_TOKEN is not set: copy the bot token from the Discord "
                           "developer portal (Bot → Reset Token) into DISCORD_TOKEN.")
    return settings.discord_token.get_secret_value()


def _queue(settings: Settings) -> JobQueue:
    from tasks.core.connection import redis_client  # noqa: PLC0415
    from tasks.worker.celery_app import create_celery  # noqa: PLC0415

    return JobQueue(settings, redis_client(settings), create_celery(settings))


def run_bot(settings: Settings) -> None:
    """Connect to the gateway and serve until stopped (`imagine discord`)."""
    token = _token(settings)
    point_at(settings)
    create_bot(settings, _queue(settings)).run(token, log_handler=None)


async def _sync(settings: Settings) -> list[app_commands.AppCommand]:
    bot = create_bot(settings, _queue(settings))
    async with bot:
        await bot.login(_token(settings))  # runs setup_hook: the tree gets its commands
        guild = discord.Object(id=settings.discord_guild_id) if settings.discord_guild_id else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        return await bot.tree.sync(guild=guild)


def sync_commands(settings: Settings) -> list[str]:
    """Register the slash commands with Discord (globally, or in DISCORD_GUILD_ID) and exit."""
    _token(settings)
    point_at(settings)
    return [command.name for command in asyncio.run(_sync(settings))]
