"""The application commands: `/imagine` (with an optional image), `/recall` and the message
menu "Recall". Top-level commands only: Discord forbids sub-commands beside options.

No `from __future__ import annotations` here: discord.py reads the options from real
annotations, whose bounds come from the settings at build time.
"""

import asyncio
from typing import Any

import discord
from discord import app_commands

from bots.catalogue import listing, listing_text, model_items
from bots.discord.admin_commands import admin_group
from bots.discord.bot import EPHEMERAL_LIMIT, ImagineBot, interaction_requester, usage_message
from bots.discord.buttons import send_ephemeral
from bots.discord.uploads import UploadError, check_size, first_image, needs_image_prompt
from bots.errors import PromptError
from bots.grammar import fields_with_control, format_request
from bots.help import DISCORD, help_text
from bots.limits import Limits
from bots.model_flags import Control, needs_control_image
from bots.quota_text import quota_answer
from generator.library import lora_files
from generator.request import SEED_MAX
from settings.i18n import N_, _

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "21:9")
AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices
CHOICE_MAX = 100  # characters of a choice's name and of its value
RECALL_MENU = N_("Recall")


def _bot(interaction: discord.Interaction) -> ImagineBot:
    client = interaction.client
    assert isinstance(client, ImagineBot)
    return client


async def _too_large(interaction: discord.Interaction, attachment: discord.Attachment) -> bool:
    """Refuse an attachment over IMAGINE_MAX_UPLOAD_BYTES before deferring (ephemeral)."""
    try:
        check_size(attachment, _bot(interaction).settings.max_upload_bytes)
    except UploadError as exc:
        await send_ephemeral(interaction, f"⚠️ {exc.message}")
        return True
    return False


async def _any_too_large(interaction: discord.Interaction,
                         *attachments: discord.Attachment | None) -> bool:
    for attachment in attachments:
        if attachment is not None and await _too_large(interaction, attachment):
            return True
    return False


def imagine_command(limits: Limits) -> app_commands.Command[Any, Any, None]:
    """`/imagine` with typed options whose bounds are this deployment's limits."""

    @app_commands.command(name="imagine", description=N_(
        "Draw an image from a prompt (and an image to start from)."))
    @app_commands.describe(
        prompt=N_("What to draw; flags such as --ar 16:9 --seed 7 --no text work here too"),
        aspect_ratio=N_("Shape of the image"), seed=N_("Same seed + same prompt = same image"),
        steps=N_("More steps: slower, often finer"), negative=N_("What to leave out"),
        count=N_("How many images"), model=N_("Which model draws it"),
        image=N_("An image to start from (an image prompt)"),
        lora=N_("LoRAs: name or name:0.8, several separated by commas"),
        control=N_("A control image for --cn KIND in the prompt (ControlNet)"))
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
        image: discord.Attachment | None = None,
        lora: app_commands.Range[str, 1, 1000] | None = None,
        control: discord.Attachment | None = None,
    ) -> None:
        """Draw an image from a prompt (and an image to start from)."""
        client = _bot(interaction)
        fields = {"prompt": prompt, "ar": aspect_ratio, "seed": seed, "steps": steps,
                  "no": negative, "n": count, "model": model, "lora": lora}
        try:
            request, cn = fields_with_control(fields, client.limits, image=image is not None)
            _check_control(cn, control, needs_image_prompt(prompt, image))
        except PromptError as exc:
            await send_ephemeral(interaction, usage_message(exc))
            return
        if cn is None and not needs_image_prompt(prompt, image):
            await client.start_from_interaction(interaction, request)
        elif not await _any_too_large(interaction, image, control):
            # The options as prompt text, so the image-prompt reader sees one grammar.
            await client.start_image_prompt(
                interaction, format_request(request, client.limits, cn), image, control)

    imagine.autocomplete("model")(model_choices)
    imagine.autocomplete("lora")(lora_choices)
    return imagine


def _choice(label: str, value: str) -> app_commands.Choice[str]:
    cut = label if len(label) <= CHOICE_MAX else label[:CHOICE_MAX - 1] + "…"
    return app_commands.Choice(name=cut, value=value)


async def model_choices(interaction: discord.Interaction, current: str
                        ) -> list[app_commands.Choice[str]]:
    """The allowed models whose name (or description) contains what was typed, each shown
    with its description and family."""
    wanted = current.casefold()
    choices = []
    for item in model_items(_bot(interaction).settings):  # per keystroke: no folder read
        about = " · ".join(part for part in (item.description, item.family) if part)
        if wanted in item.name.casefold() or wanted in about.casefold():
            choices.append(_choice(f"{item.name} — {about}" if about else item.name,
                                   item.name))
    return choices[:AUTOCOMPLETE_LIMIT]


async def lora_choices(interaction: discord.Interaction, current: str
                       ) -> list[app_commands.Choice[str]]:
    """LoRA names of IMAGINE_LORA_DIR for the LoRA being typed, after those already
    chosen: `a:0.8,st` offers `a:0.8,style`."""
    done, _, typing = current.rpartition(",")
    prefix = f"{done}," if done else ""
    names = [name for name in lora_files(_bot(interaction).settings.lora_dir)
             if typing.strip().casefold() in name.casefold()]
    return [_choice(prefix + name, prefix + name) for name in names
            if len(prefix + name) <= CHOICE_MAX][:AUTOCOMPLETE_LIMIT]


@app_commands.command(name="models", description=N_(
    "List the models, LoRAs, embeddings and ControlNets you can use (only you see it)."))
async def models_command(interaction: discord.Interaction) -> None:
    """List the models, LoRAs, embeddings and ControlNets you can use (only you see it)."""
    text = listing_text(listing(_bot(interaction).settings), limit=EPHEMERAL_LIMIT, bold="**")
    await send_ephemeral(interaction, text)


@app_commands.command(name="help", description=N_(
    "How to draw: the prompt's flags, the buttons, examples (only you see it)."))
async def help_command(interaction: discord.Interaction) -> None:
    """How to draw: the prompt's flags, the buttons, examples (only you see it)."""
    await send_ephemeral(interaction, help_text(DISCORD))


@app_commands.command(name="quota", description=N_(
    "Images you made today, how many are left and when that resets (only you see it)."))
async def quota_command(interaction: discord.Interaction) -> None:
    """Images you made today, how many are left and when that resets (only you see it)."""
    quotas = _bot(interaction).queue.policy.quotas
    await send_ephemeral(interaction, await asyncio.to_thread(
        quota_answer, quotas, interaction_requester(interaction), "**"))


@app_commands.command(name="recall", description=N_(
    "Show how an image was made, with a button to draw it again."))
@app_commands.describe(image=N_("An image made by imagine (or A1111): its prompt and settings"))
async def recall_command(interaction: discord.Interaction, image: discord.Attachment) -> None:
    """Show how an image was made, with a button to draw it again."""
    if not await _too_large(interaction, image):
        await _bot(interaction).recall_for_interaction(interaction, image)


async def _recall_message(interaction: discord.Interaction, message: discord.Message) -> None:
    """The Recall menu on a message: the parameters of its first image."""
    image = first_image(message.attachments)
    if image is None or not await _too_large(interaction, image):
        await _bot(interaction).recall_for_interaction(interaction, image)


def recall_menu() -> app_commands.ContextMenu:
    return app_commands.ContextMenu(name=RECALL_MENU, callback=_recall_message)


def _check_control(cn: Control | None, control: discord.Attachment | None,
                   images: bool) -> None:
    """PromptError when --cn and the control image do not go together."""
    if control is not None and cn is None:
        raise PromptError(_("The control image needs --cn KIND in the prompt (e.g. --cn "
                            "canny): say which ControlNet it guides."))
    if cn is not None and control is None and not images:
        raise needs_control_image(cn)


def all_commands(limits: Limits) -> list[app_commands.Command[Any, Any, None]
                                         | app_commands.ContextMenu | app_commands.Group]:
    """Every command the bot registers, in the order `--sync` lists them."""
    return [imagine_command(limits), recall_command, recall_menu(), models_command,
            help_command, quota_command, admin_group()]
