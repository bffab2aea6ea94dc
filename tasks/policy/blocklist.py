"""IMAGINE_PROMPT_BLOCKLIST: words and regular expressions no prompt may contain.

`Blocklist(settings)`; `match(*texts) -> str | None` returns the entry (its line as written)
that one of `texts` hits after normalisation, else None; reloads the file when its
modification time changes. `REFUSAL` is the one message a refused prompt gets on every front
end (it never says which rule).

The file: one entry a line; `#` starts a comment line; `re:` before a regular expression
(case-insensitive, searched in the normalised text and in its spelling with the punctuation
inside words dropped: `k.i.l.l`); any other line is a word or a phrase that matches whole words
only (`foo` refuses `a foo`, `Ｆｏｏ`, `f.o.o`, `f o o`, `fоо` in Cyrillic — not `food`). An entry
in Chinese, Japanese or Thai, written without spaces, matches anywhere. tasks/policy/normalise.py
says what normalisation undoes.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from settings import Settings
from settings.errors import ConfigError
from settings.i18n import N_
from tasks.policy.normalise import forms, normalise, unspaced, words

log = logging.getLogger(__name__)

REFUSAL = N_("This prompt was refused by this server's content policy. Please rephrase it.")
REGEX_PREFIX = "re:"
CHECK_SECONDS = 1.0  # the file's modification time is looked at no more often than this


@dataclass(frozen=True)
class Entries:
    """A parsed blocklist: plain entries as one pattern (or None), regular expressions."""

    plain: re.Pattern[str] | None
    plain_lines: dict[str, str]  # normalised phrase → its line as written
    unspaced_lines: dict[str, str]  # normalised entry of an unspaced script → its line
    regexes: tuple[tuple[re.Pattern[str], str], ...]

    def match(self, text: str) -> str | None:
        normalised = normalise(text)
        spellings = forms(normalised)
        if self.plain is not None:
            for spelling in spellings:
                hit = self.plain.search(spelling)
                if hit is not None:
                    return self.plain_lines[hit.group(1)]
        if self.unspaced_lines:
            joined = "".join(words(normalised))  # `坏 词`, `坏.词` → `坏词`
            for entry, line in self.unspaced_lines.items():
                if entry in joined:
                    return line
        for pattern, line in self.regexes:
            if any(pattern.search(form) for form in (normalised, *spellings)):
                return line
        return None


def parse(text: str, source: str) -> Entries:
    """The entries of a blocklist file's text; ConfigError naming the line of a bad one."""
    plain: dict[str, str] = {}
    unspaced_lines: dict[str, str] = {}
    regexes: list[tuple[re.Pattern[str], str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(REGEX_PREFIX):
            regexes.append((_regex(line, source, number), line))
            continue
        normalised = normalise(line)
        phrase = " ".join(words(normalised))
        if unspaced(phrase):
            unspaced_lines.setdefault(phrase.replace(" ", ""), line)
        elif phrase:
            plain.setdefault(phrase, line)
            if " " not in phrase and len(phrase) > 1:  # spaced out: `f o o`, `a f o o`
                plain.setdefault(" ".join(phrase), line)
    pattern = None
    if plain:
        # Longest first, so that a phrase wins over a word it starts with.
        choices = "|".join(re.escape(phrase) for phrase in sorted(plain, key=len, reverse=True))
        pattern = re.compile(rf"(?<!\S)({choices})(?!\S)")
    return Entries(pattern, plain, unspaced_lines, tuple(regexes))


def _regex(line: str, source: str, number: int) -> re.Pattern[str]:
    expression = line[len(REGEX_PREFIX):].strip()
    try:
        if not expression:
            raise re.error("nothing after re:")
        return re.compile(expression, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"{source} line {number}: {expression!r} is not a valid regular "
                          f"expression ({exc}); write a Python regular expression after "
                          "`re:`, e.g. `re:\\bbad\\w*`, or a plain word without it.") from None


def load(path: Path) -> Entries:
    """The entries of the file at `path`; ConfigError when it cannot be read or is wrong."""
    source = f"IMAGINE_PROMPT_BLOCKLIST ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source} cannot be read ({exc}); point it at a UTF-8 text file "
                          "with one word, phrase or `re:` expression a line, or unset it.") from None
    return parse(text, source)


class Blocklist:
    """The entries of IMAGINE_PROMPT_BLOCKLIST, reloaded when the file changes. A file that
    cannot be read or holds a bad expression stops the start (ConfigError); once running, a
    broken edit is logged and the last good entries stay in force."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = settings.prompt_blocklist
        self.clock = clock
        self._lock = threading.Lock()
        self._checked = clock()
        self._stamp: tuple[int, int] | None = None  # None: not there at the last look
        self.entries: Entries | None = None
        if self.path is not None:
            self._stamp = self._file_stamp()
            self.entries = load(self.path)

    def match(self, *texts: str) -> str | None:
        """The entry (its line as written) that one of `texts` hits, else None."""
        if self.path is None:
            return None
        entries = self._current()
        if entries is None:
            return None
        for text in texts:
            if text:
                hit = entries.match(text)
                if hit is not None:
                    return hit
        return None

    def _current(self) -> Entries | None:
        with self._lock:
            now = self.clock()
            if now - self._checked < CHECK_SECONDS:
                return self.entries
            self._checked = now
            stamp = self._stamp_or_none()
            if stamp == self._stamp:
                return self.entries
            self._stamp = stamp  # one attempt (and one log line) per change of the file
            try:  # a file gone for now fails here once, and is read again when it is back
                assert self.path is not None
                self.entries = load(self.path)
                log.info("prompt blocklist %s reloaded", self.path)
            except ConfigError as exc:
                log.error("prompt blocklist not reloaded, the last good one stays: %s",
                          exc.message)
            return self.entries

    def _stamp_or_none(self) -> tuple[int, int] | None:
        try:
            return self._file_stamp()
        except ConfigError:
            return None

    def _file_stamp(self) -> tuple[int, int]:
        assert self.path is not None
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"IMAGINE_PROMPT_BLOCKLIST ({self.path}) cannot be read ({exc}); "
                              "point it at a UTF-8 text file with one word, phrase or `re:` "
                              "expression a line, or unset it.") from None
        # Size too: two writes within the file system's time resolution differ in it.
        return stat.st_mtime_ns, stat.st_size
