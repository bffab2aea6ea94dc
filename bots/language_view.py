"""What a result tells about its prompt's language (#16): the prompt as the user wrote it,
when the one drawn differs (translated into English, or expanded by --enhance).

Front ends show the drawn prompt (the job's request) as before and add these lines, in
the requester's language (they run inside use_locale).
"""

from __future__ import annotations

from bots.presentation import shorten
from settings.i18n import _
from tasks.core.jobs import Job

# The original is quoted whole up to this many characters: enough to recognise it.
SHOWN = 300


def language_lines(job: Job) -> list[str]:
    """One line naming what the user wrote, or none when it was drawn as written."""
    original = job.prompt_original
    if original is None:
        return []
    quoted = shorten(original, SHOWN)
    if job.enhanced:
        return [_("Enhanced from your idea: “{original}”").format(original=quoted)]
    return [_("Drawn in English, translated from your prompt ({language}): “{original}”").format(
        language=job.prompt_language or "?", original=quoted)]
