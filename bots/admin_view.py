"""The data admin commands pass around (bots.admin): the command, its answer, and how the
answering chat shows users and user text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from settings.i18n import _

AUDIT_DEFAULT = 10  # entries `audit` shows when not told


@dataclass(frozen=True)
class AdminCommand:
    name: str
    user: str = ""  # the user key it is about ("slack:U1", "discord:42", "api:ci-bot")
    reason: str = ""
    images: int | None = None  # quota: daily images (0: no limit); None: back to the rules
    job: str = ""
    image: int | None = None  # reveal: the image's number (1-based); None: the first withheld
    count: int = AUDIT_DEFAULT


@dataclass(frozen=True)
class AdminFile:
    filename: str
    data: bytes


@dataclass(frozen=True)
class AdminAnswer:
    text: str  # for the admin's eyes only
    files: tuple[AdminFile, ...] = ()
    detail: str = ""  # what the audit entry says happened (English, for operators)
    outcome: str = "done"


def _same(text: str) -> str:
    return text


@dataclass(frozen=True)
class View:
    """How the answering chat shows users and user text."""

    platform: str  # "slack" or "discord": its users are shown as mentions
    escape: Callable[[str], str] = _same  # user text made inert for the chat's markup
    limit: int = 2000  # characters of one message

    def user(self, key: str) -> str:
        platform, _sep, ident = key.partition(":")
        if platform != self.platform or not ident:
            return f"`{self.escape(key)}`"
        # Slack shows a mention as a name: the id next to it is what commands take.
        return f"<@{ident}> (`{ident}`)" if platform == "slack" else f"<@{ident}>"

    def code(self, text: str, width: int = 60) -> str:
        flat = " ".join(text.split())
        cut = flat if len(flat) <= width else flat[:width - 1] + "…"
        return f"`{self.escape(cut).replace('`', 'ˋ')}`" if cut else "``"

    def fit(self, lines: list[str]) -> str:
        """`lines` joined, dropping the last ones (with a note) to stay within `limit`."""
        text = "\n".join(lines)
        while len(text) > self.limit and len(lines) > 1:
            lines = lines[:-1]
            text = "\n".join([*lines, _("… (cut to fit one message)")])
        return text
