"""Slash command descriptions in the user's language: discord.py asks a Translator for every
string of the command tree when it builds the commands' payload (`--sync` sends them as
`*_localizations`), and Discord shows each user the text of their client language.

Only descriptions and the context menu's name are translated: command and option names are
what users type, and stay the same in every language. The texts are marked with `N_()`
where the commands are defined, so they are in the catalogs like every other message.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from settings.i18n import SOURCE_LOCALE, best_locale, translations

DESCRIPTIONS = {Where.command_description, Where.group_description,
                Where.parameter_description}


class CatalogTranslator(app_commands.Translator):
    """Our gettext catalogs as discord.py's translator; None where a string stays as written."""

    async def translate(self, string: app_commands.locale_str, locale: discord.Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        menu_name = (context.location is Where.command_name
                     and isinstance(context.data, app_commands.ContextMenu))
        if context.location not in DESCRIPTIONS and not menu_name:
            return None
        chosen = best_locale(locale.value)
        if chosen is None or chosen == SOURCE_LOCALE:
            return None
        msgid = string.extras.get("msgid", string.message)
        text = translations(chosen).gettext(msgid)
        if text == msgid:
            return None
        return text.format(**string.extras) if "msgid" in string.extras else text


def formatted(msgid: str, **values: object) -> app_commands.locale_str:
    """A description with values in it: English formatted as the default, `msgid` kept for
    the catalogs (the translator formats the translation with the same values)."""
    return app_commands.locale_str(msgid.format(**values), msgid=msgid, **values)
