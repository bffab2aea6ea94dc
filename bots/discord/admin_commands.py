"""`/imagine-admin <command>`: the admin commands (bots.admin) as one top-level command with
sub-commands. Discord shows it only to members with Manage Server (its default permission,
which a server's owner can change); the handler checks the member's permissions again, so a
changed default never lets others in. Every answer is ephemeral; `reveal` attaches the image.

No `from __future__ import annotations` here: discord.py reads the options from real
annotations.
"""

import asyncio
import io

import discord
from discord import app_commands

from bots.admin import (
    AUDIT,
    AUDIT_MAX,
    BAN,
    DELETE,
    PAUSE,
    PURGE,
    QUEUE,
    QUOTA,
    RESUME,
    REVEAL,
    UNBAN,
    Admin,
    AdminCommand,
    admin_refusal,
)
from bots.admin_view import AUDIT_DEFAULT, View
from bots.discord.bot import EPHEMERAL_LIMIT, ImagineBot
from bots.discord.command_translator import formatted
from bots.permissions import Role, discord_role
from settings.i18n import N_, use_locale
from tasks.core.storage import open_storage

ADMIN_COMMAND = "imagine-admin"
VIEW = View(platform="discord", limit=EPHEMERAL_LIMIT)
JOB_ID = app_commands.Range[str, 8, 64]


def _is_admin(interaction: discord.Interaction) -> bool:
    permissions = interaction.permissions
    return discord_role(manage_messages=permissions.manage_messages,
                        manage_guild=permissions.manage_guild) >= Role.admin


def _admin(client: ImagineBot) -> Admin:
    admin = getattr(client, "imagine_admin", None)
    if not isinstance(admin, Admin):  # one per bot: it holds the storage client
        admin = Admin(client.settings, client.queue, open_storage(client.settings))
        client.imagine_admin = admin  # type: ignore[attr-defined]
    return admin


async def run_admin(interaction: discord.Interaction, command: AdminCommand) -> None:
    """Check the member, run `command` off the event loop, answer ephemerally."""
    client = interaction.client
    assert isinstance(client, ImagineBot)
    admin = _admin(client)
    actor = f"discord:{interaction.user.id}"
    with use_locale(str(interaction.locale.value)):
        if not _is_admin(interaction):
            await asyncio.to_thread(admin.record, command, actor, "refused", "not an admin")
            await interaction.response.send_message(admin_refusal(), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        answer = await asyncio.to_thread(admin.run, command, actor, VIEW)
        # SPOILER_: a withheld image stays hidden until the admin clicks it.
        files = [discord.File(io.BytesIO(f.data), filename=f"SPOILER_{f.filename}")
                 for f in answer.files]
        await interaction.followup.send(answer.text, files=files, ephemeral=True)


def _user_key(user: discord.abc.User) -> str:
    return f"discord:{user.id}"


def admin_group() -> app_commands.Group:
    """The command and its sub-commands, each a thin call of run_admin."""
    group = app_commands.Group(
        name=ADMIN_COMMAND, description=N_("Admin: bans, quotas, the queue, the audit trail"),
        default_permissions=discord.Permissions(manage_guild=True), guild_only=True)

    @group.command(name=BAN, description=N_("Refuse a user's jobs everywhere"))
    @app_commands.describe(user=N_("Who to ban"), reason=N_("Why (kept in the audit trail)"))
    async def ban(interaction: discord.Interaction, user: discord.User,
                  reason: app_commands.Range[str, 1, 300] | None = None) -> None:
        await run_admin(interaction, AdminCommand(BAN, user=_user_key(user),
                                                  reason=reason or ""))

    @group.command(name=UNBAN, description=N_("Let a banned user draw again"))
    async def unban(interaction: discord.Interaction, user: discord.User) -> None:
        await run_admin(interaction, AdminCommand(UNBAN, user=_user_key(user)))

    @group.command(name=QUOTA, description=N_("Set a user's daily images, or go back to the rules"))
    @app_commands.describe(images=N_("Images a day (0: no limit); leave out for the server's rules"))
    async def quota(interaction: discord.Interaction, user: discord.User,
                    images: app_commands.Range[int, 0, 1_000_000] | None = None) -> None:
        await run_admin(interaction, AdminCommand(QUOTA, user=_user_key(user), images=images))

    @group.command(name=PURGE, description=N_("Cancel a user's unfinished jobs"))
    async def purge(interaction: discord.Interaction, user: discord.User) -> None:
        await run_admin(interaction, AdminCommand(PURGE, user=_user_key(user)))

    @group.command(name=PAUSE, description=N_("Stop starting new jobs (they still queue)"))
    async def pause(interaction: discord.Interaction) -> None:
        await run_admin(interaction, AdminCommand(PAUSE))

    @group.command(name=RESUME, description=N_("Start drawing waiting jobs again"))
    async def resume(interaction: discord.Interaction) -> None:
        await run_admin(interaction, AdminCommand(RESUME))

    @group.command(name=QUEUE, description=N_("The waiting and running jobs"))
    async def queue(interaction: discord.Interaction) -> None:
        await run_admin(interaction, AdminCommand(QUEUE))

    @group.command(name=AUDIT, description=N_("The last audit entries"))
    @app_commands.describe(count=formatted(N_("How many ({count} if left out)"),
                                           count=AUDIT_DEFAULT))
    async def audit(interaction: discord.Interaction,
                    count: app_commands.Range[int, 1, AUDIT_MAX] = AUDIT_DEFAULT) -> None:
        await run_admin(interaction, AdminCommand(AUDIT, count=count))

    @group.command(name=REVEAL, description=N_("See a withheld image (no job: the list)"))
    @app_commands.describe(job=N_("The job's id"), image=N_("Which image (the first withheld if left out)"))
    async def reveal(interaction: discord.Interaction, job: JOB_ID | None = None,
                     image: app_commands.Range[int, 1, 99] | None = None) -> None:
        await run_admin(interaction, AdminCommand(REVEAL, job=(job or "").strip().lower(),
                                                  image=image))

    @group.command(name=DELETE, description=N_("Delete a job's images from storage"))
    async def delete(interaction: discord.Interaction, job: JOB_ID) -> None:
        await run_admin(interaction, AdminCommand(DELETE, job=job.strip().lower()))

    return group
