"""IMAGINE_PROMPT_BLOCKLIST: words and regular expressions no prompt may contain.

CONTRACT (to be implemented): `Blocklist(settings)`; `match(*texts) -> str | None` returns
the entry (its line as written) that one of `texts` hits after normalisation, else None;
reloads the file when its modification time changes. `REFUSAL` is the one message a refused
prompt gets on every front end (it never says which rule).
"""

from __future__ import annotations

from settings import Settings
from settings.i18n import N_

REFUSAL = N_("This prompt was refused by this server's content policy. Please rephrase it.")


class Blocklist:
    def __init__(self, settings: Settings) -> None:
        self.path = settings.prompt_blocklist

    def match(self, *texts: str) -> str | None:
        return None
