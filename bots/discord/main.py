"""The Discord bot's entry points: build the client with its commands, run it, or register
its commands with Discord (`imagine discord [--sync]`). Only wiring lives here."""

from __future__ import annotations

import asyncio

import discord
import yarl
from discord import app_commands

from bots.discord.bot import ImagineBot
from bots.discord.commands import all_commands
from bots.limits import Limits
from settings import Settings
from settings.errors import ConfigError
from tasks.core.queue import JobQueue


def create_bot(settings: Settings, queue: JobQueue, limits: Limits | None = None
               ) -> ImagineBot:
    """The bot with its dependencies; nothing connects until it is started."""
    limits = limits or Limits.from_settings(settings)
    return ImagineBot(settings, queue, limits, all_commands(limits))


def point_at(settings: Settings) -> None:
    """Send REST and gateway traffic to DISCORD_API_URL / DISCORD_GATEWAY_URL when set."""
    if settings.discord_api_url:
        discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def _token(settings: Settings) -> str:
    if settings.discord_token is None:
        raise ConfigError("DISCORD_TOKEN is not set: copy the bot token from the Discord "
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
    """Register the commands with Discord (globally, or in DISCORD_GUILD_ID) and exit."""
    _token(settings)
    point_at(settings)
    return [command.name for command in asyncio.run(_sync(settings))]
