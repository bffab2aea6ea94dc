"""The Discord bot: prompts from `/imagine`, @mentions and DMs (with an image or without),
recalls of PNGs, and the presses of job buttons.

Handlers only translate: a payload becomes an ImageRequest (the shared grammar, or the
image-prompt reader when an image comes with it), a Job goes through `JobQueue.submit` on a
worker thread (the event loop never blocks on Redis), and errors become a message. Results
are posted by the deliver worker (bots.discord.delivery), not here. The commands are built
in bots.discord.commands and the client is wired in bots.discord.main.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from bots.admin import paused_wait
from bots.discord.access import DiscordAccess, Private, message_requester, tell_privately
from bots.discord.buttons import JobButton, cancel_view, run_again_view, send_ephemeral
from bots.discord.command_translator import CatalogTranslator
from bots.discord.formatting import CANCEL, RUN_AGAIN, finished_text, queued_text
from bots.discord.manage import MANAGED, manage_button
from bots.discord.requesters import interaction_extra
from bots.discord.reveal import reveal_original
from bots.discord.uploads import Uploads, first_image, needs_image_prompt, second_image
from bots.errors import PromptError
from bots.followups import REVEAL, TITLES, VARY_REGION, FollowUpLimits, find_button, press
from bots.grammar import USAGE, parse
from bots.limits import Limits
from bots.permissions import cancel_refusal, discord_role, may_cancel
from bots.presentation import shorten
from bots.region import RegionLinks
from generator.request import ImageRequest
from settings import Settings
from settings.errors import ImagineError
from settings.i18n import _, set_locale
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue, format_wait
from tasks.core.recalls import RecallStore
from tasks.core.storage import open_storage
from tasks.errors import PolicyRefusal

log = logging.getLogger(__name__)

EPHEMERAL_LIMIT = 2000
Command = app_commands.Command[Any, Any, Any] | app_commands.ContextMenu | app_commands.Group


class LocaleTree(app_commands.CommandTree["ImagineBot"]):
    """The command tree that speaks each user's language: every slash command, menu and
    autocomplete runs in its own asyncio task, which this sets to the user's client locale
    before the handler (and its error handler) runs."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        set_locale(str(interaction.locale.value))
        return True


class ImagineBot(discord.Client):
    """A discord.py client with its dependencies passed in; bots.discord.main builds one."""

    def __init__(self, settings: Settings, queue: JobQueue, limits: Limits,
                 commands: Sequence[Command] = ()) -> None:
        # No privileged intents: Discord sends the content (and attachments) of messages
        # that mention the bot and of DMs anyway, and that is all we read.
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
        self.uploads = Uploads(settings, limits, open_storage(settings), queue.redis)
        self.region_links = RegionLinks(queue.redis, settings)
        self.access = DiscordAccess(settings, queue)
        self.tree: app_commands.CommandTree[ImagineBot] = LocaleTree(self)
        self._commands = commands

    async def setup_hook(self) -> None:
        """Register the command tree and the persistent job buttons before connecting."""
        for command in self._commands:
            self.tree.add_command(command)
        self.tree.error(on_command_error)
        await self.tree.set_translator(CatalogTranslator())
        self.add_dynamic_items(JobButton)

    async def on_ready(self) -> None:
        """Log who we are once the gateway session is ready."""
        log.info("Discord bot ready as %s (id %s) in %d guilds", self.user,
                 self.user.id if self.user else "?", len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        """A DM, or a message mentioning the bot, is a prompt (an image alone: a recall);
        the answer is a reply to it."""
        if message.author.bot or self.user is None:
            return
        if message.guild is not None and not self._mentioned(message):
            return
        # A message carries no user language: the server's (a DM: English). This event's
        # own task, so it ends with the handling.
        set_locale(str(message.guild.preferred_locale.value) if message.guild else None)
        text = self._without_mentions(message)
        image = first_image(message.attachments)
        if not text and image is not None:
            await self.recall_for_message(message, image)
            return
        # Not an image at all: still handed to the reader, which says what it takes.
        attachment = first_image(message.attachments) or next(iter(message.attachments), None)
        await self.start_from_message(message, text, attachment,
                                      second_image(message.attachments))

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

    async def prepare(self, text: str, attachment: discord.Attachment | None,
                      second: discord.Attachment | None = None,
                      control: discord.Attachment | None = None
                      ) -> tuple[ImageRequest, list[str]]:
        """The request of a prompt and the notes its job carries; PromptError/ImagineError."""
        if needs_image_prompt(text, attachment) or control is not None:
            return await self.uploads.image_prompt(text, attachment, second, control)
        return parse(text, self.limits), []

    async def start_from_message(self, message: discord.Message, text: str,
                                 attachment: discord.Attachment | None = None,
                                 second: discord.Attachment | None = None) -> None:
        requester = message_requester(message)
        refusal = await self.access.refusal(requester, message.channel, prompt=text)
        if refusal is None:
            try:
                request, notes = await self.prepare(text, attachment, second)
            except ImagineError as exc:
                await message.reply(error_message(exc), mention_author=False)
                return
            refusal = await self.access.refusal(requester, message.channel, request)
        if refusal is not None:  # answered in place, like every answer to a mention
            await message.reply(refusal, mention_author=False)
            return
        job = Job(request=request, notes=notes, requester=requester)
        text = queued_text(request.prompt, *await self._estimate(job))
        status = await message.reply(text, view=cancel_view(job.id), mention_author=False)
        job = with_status_message(job, str(status.id))
        error = await self._submit(job)
        if error is not None:
            await status.edit(content=error, view=None)

    # --- jobs from interactions ------------------------------------------------------------
    async def start_image_prompt(self, interaction: discord.Interaction, text: str,
                                 attachment: discord.Attachment | None,
                                 control: discord.Attachment | None = None) -> None:
        """`/imagine` with an image: defer first (downloading may take a while), then read."""
        if await self.access.stops(interaction, interaction_requester(interaction)):
            return
        await interaction.response.defer(thinking=True)
        try:
            request, notes = await self.prepare(text, attachment, control=control)
        except ImagineError as exc:
            await replace_with_ephemeral(interaction, error_message(exc))
            return
        await self.start_from_interaction(interaction, request, notes=notes)

    async def start_from_interaction(self, interaction: discord.Interaction,
                                     request: ImageRequest, parent: Job | None = None,
                                     action: str | None = None,
                                     notes: Sequence[str] = ()) -> None:
        """Defer (Discord allows 3 s), show the place in line, then submit."""
        requester = interaction_requester(interaction)
        if await self.access.stops(interaction, requester, request):
            return
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        job = Job(request=request, requester=requester,
                  parent=parent.id if parent else None, action=action, notes=list(notes))
        text = queued_text(request.prompt, *await self._estimate(job))
        try:
            status = await interaction.edit_original_response(content=text,
                                                              view=cancel_view(job.id))
            job = with_status_message(job, str(status.id))
        except discord.HTTPException as exc:
            # The deliverer still reaches the original response through the token.
            log.warning("could not show the queue position: %s", exc)
        error = await self._submit(job)
        if isinstance(error, Private):  # a rule refused it: the user alone is told
            await tell_privately(interaction, error)
        elif error is not None:
            await interaction.edit_original_response(content=error, view=None)

    async def _estimate(self, job: Job) -> tuple[int, str]:
        """Place in line (its user's fair turn) and wait for `job` submitted now."""
        model = job.request.model
        # Shown before submitting, so the status message exists (and its id is in the job)
        # before any worker can edit or remove it.

        def estimate() -> tuple[int, str]:
            position = self.queue.next_position(model, job.requester)
            return position, (paused_wait(self.queue)
                              or format_wait(self.queue.eta(position, model)))

        return await asyncio.to_thread(estimate)

    async def _submit(self, job: Job) -> str | None:
        """Submit off the event loop; the message for the user when it was refused."""
        try:
            await asyncio.to_thread(self.queue.submit, job)
        except PolicyRefusal as exc:
            return Private(f"⚠️ {exc.message}")
        except ImagineError as exc:
            return f"⚠️ {exc.message}"
        except Exception:
            log.exception("submitting job %s failed", job.id)
            return _("⚠️ The queue cannot be reached right now; try again in a minute.")
        return None

    # --- recall ----------------------------------------------------------------------------
    async def recall_for_interaction(self, interaction: discord.Interaction,
                                     attachment: discord.Attachment | None) -> None:
        """`/recall` or the Recall menu: the image's parameters and Run again, or why not."""
        if attachment is None:
            await send_ephemeral(interaction, _("That message has no image attached: Recall "
                                                "reads the prompt and settings recorded in an "
                                                "image made by imagine (or A1111)."))
            return
        await interaction.response.defer(thinking=True)
        try:
            text, recall_id = await self.uploads.recall(attachment)
        except ImagineError as exc:
            await replace_with_ephemeral(interaction, f"⚠️ {exc.message}")
            return
        await interaction.edit_original_response(content=text, view=run_again_view(recall_id))

    async def recall_for_message(self, message: discord.Message,
                                 attachment: discord.Attachment) -> None:
        try:
            text, recall_id = await self.uploads.recall(attachment)
        except ImagineError as exc:
            await message.reply(f"⚠️ {exc.message}", mention_author=False)
            return
        await message.reply(text, view=run_again_view(recall_id), mention_author=False)

    # --- buttons ---------------------------------------------------------------------------
    async def on_job_button(self, interaction: discord.Interaction, name: str, target: str,
                            index: int) -> None:
        """Every job button, Cancel and Run again: a new job, a link, or a stop."""
        if name == RUN_AGAIN:
            await self._run_again(interaction, target)
            return
        parent = await asyncio.to_thread(self.queue.jobs.find, target)
        if parent is None:
            await send_ephemeral(interaction, _("That job has expired; start a new one with "
                                                "/imagine."))
            return
        if name == CANCEL:
            await self._cancel(interaction, parent)
            return
        if name in MANAGED:  # Report, Delete: make no job (bots/discord/manage.py)
            await manage_button(self, interaction, name, parent, index)
            return
        if name == REVEAL:  # makes no job: the originals, for the requester alone
            await reveal_original(interaction, parent, self.uploads.storage, self.settings,
                                  self.queue.redis)
            return
        try:
            button = find_button(name)
            if button.action == VARY_REGION:
                await self._region_link(interaction, parent, index)
                return
            request = press(parent, index, name, FollowUpLimits.from_settings(self.settings))
        except PromptError as exc:
            await send_ephemeral(interaction, exc.message)
            return
        await self.start_from_interaction(interaction, request, parent, button.action)

    async def _region_link(self, interaction: discord.Interaction, parent: Job,
                           index: int) -> None:
        """Vary (Region): a one-time link to the mask editor, shown to the presser only."""
        # The job the link queues is delivered like a mention's: a reply in this channel to
        # the image, since the link can outlive this press's 15-minute interaction token.
        requester = Requester(
            platform="discord", user=str(interaction.user.id),
            channel=str(interaction.channel_id or ""),
            thread=str(interaction.message.id) if interaction.message else "",
            extra=interaction_extra(interaction))
        if await self.access.stops(interaction, requester):
            return
        url = await asyncio.to_thread(self.region_links.issue, parent, index, requester)
        await send_ephemeral(interaction, (
            _("🖌️ **{title}**: paint what to redraw on image {number} here: <{url}>\nThe link "
              "is yours, works once and expires in {lifetime}; the new image will be posted in "
              "this channel.").format(
                title=_(TITLES[VARY_REGION]), number=index + 1, url=url,
                lifetime=self.region_links.lifetime)))

    async def _run_again(self, interaction: discord.Interaction, recall_id: str) -> None:
        store = RecallStore(self.queue.redis, self.settings.job_ttl)
        request = await asyncio.to_thread(store.find, recall_id)
        if request is None:
            await send_ephemeral(interaction, _("Those parameters are no longer kept; use "
                                                "/recall on the image again."))
            return
        await self.start_from_interaction(interaction, request)

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
            await interaction.response.edit_message(content=_("🛑 Stopping…"), view=None)
        else:
            await send_ephemeral(interaction, _("That job has already finished."))


async def on_command_error(interaction: discord.Interaction,
                           error: app_commands.AppCommandError) -> None:
    """Anything a handler did not turn into a message: log it, tell the user briefly."""
    log.error("/%s failed", interaction.command.name if interaction.command else "?",
              exc_info=error)
    try:
        await send_ephemeral(interaction, _("⚠️ Something went wrong on our side; the operator "
                                            "can find the details in the bot's log."))
    except discord.HTTPException:
        pass  # the interaction itself is gone; the log has it


async def replace_with_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """After a deferral: drop the public "thinking…" message, tell only the user why."""
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        pass  # already gone: the ephemeral message still says why
    await interaction.followup.send(text, ephemeral=True)


def interaction_requester(interaction: discord.Interaction) -> Requester:
    return Requester(
        platform="discord", user=str(interaction.user.id),
        channel=str(interaction.channel_id or ""),
        extra={"application_id": str(interaction.application_id),
               "interaction_token": interaction.token,
               "interaction_created": f"{interaction.created_at.timestamp():.3f}",
               "attachment_limit": str(interaction.filesize_limit),
               **interaction_extra(interaction)})


def with_status_message(job: Job, message_id: str) -> Job:
    requester = job.requester.model_copy(update={"message": message_id})
    return job.model_copy(update={"requester": requester})


def usage_message(error: PromptError) -> str:
    usage = _(USAGE)
    return shorten(f"⚠️ {error.message}", EPHEMERAL_LIMIT - len(usage) - 2) + "\n\n" + usage


def error_message(error: ImagineError) -> str:
    """A prompt the grammar refused gets the usage too; a refused image only its reason."""
    if type(error) is PromptError:
        return usage_message(error)
    return shorten(f"⚠️ {error.message}", EPHEMERAL_LIMIT)
