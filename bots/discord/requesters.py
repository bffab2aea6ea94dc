"""What a Discord job's requester records about where and who it came from: the server, an
age-restricted channel, a DM, the member's roles (access rules and quota overrides) and the
language (messages). The same facts for a slash command, a button and a mention."""

from __future__ import annotations

import discord

from tasks.core.jobs import EXTRA_DM, EXTRA_GUILD, EXTRA_LOCALE, EXTRA_NSFW_CHANNEL, EXTRA_ROLES

Channel = discord.abc.GuildChannel | discord.Thread | discord.abc.PrivateChannel | None


def is_nsfw(channel: object) -> bool:
    """An age-restricted channel (a thread inherits its parent's flag)."""
    check = getattr(channel, "is_nsfw", None)
    return bool(check()) if callable(check) else False


def role_ids(user: discord.abc.User | discord.Member) -> list[str]:
    """The member's role ids (none outside a server)."""
    return [str(role.id) for role in getattr(user, "roles", [])
            if not getattr(role, "is_default", lambda: False)()]


def context_extra(*, guild_id: int | None, channel: object, user: discord.abc.User,
                  locale: str | None) -> dict[str, str]:
    extra = {EXTRA_GUILD: str(guild_id or ""), EXTRA_ROLES: ",".join(role_ids(user))}
    if guild_id is None:
        extra[EXTRA_DM] = "1"
    if is_nsfw(channel):
        extra[EXTRA_NSFW_CHANNEL] = "1"
    if locale:
        extra[EXTRA_LOCALE] = locale
    return extra


def interaction_extra(interaction: discord.Interaction) -> dict[str, str]:
    """Context of a slash command or a button press; the user's own client language."""
    return context_extra(guild_id=interaction.guild_id, channel=interaction.channel,
                         user=interaction.user, locale=str(interaction.locale.value))


def message_extra(message: discord.Message) -> dict[str, str]:
    """Context of a mention: a message carries no user language, so the server's."""
    guild = message.guild
    locale = str(guild.preferred_locale.value) if guild is not None else None
    return context_extra(guild_id=guild.id if guild else None, channel=message.channel,
                         user=message.author, locale=locale)
