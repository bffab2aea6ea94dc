"""What `imagine up` prints: a ready block, one line per job event, the parts' warnings and
errors. Everything else the parts say goes to their log files (tasks.local.part_output).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

# The record format every part logs with (bots.cli._logging):
# "2026-11-28 15:02:26,894 WARNING bots.web.server: message"
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<name>[\w.\-]+): "
                    r"(?P<message>.*)$")
PROJECT_LOGGERS = ("imagine", "bots", "tasks", "generator", "settings")
# Library chatter even at WARNING or above: Python warnings (captured or not), and Celery's
# redirected stdout/stderr (progress bars, prints of libraries).
NOISE_LOGGERS = ("py.warnings", "celery.redirected")
SERIOUS = ("ERROR", "CRITICAL")
PROMPT_CHARS = 40


def worth_showing(line: str) -> tuple[str, str] | None:
    """(level, message) of a part's log line the operator should see without --verbose:
    the project's warnings and anyone's errors, never library noise, banners or tracebacks
    (those stay in the part's log file)."""
    record = RECORD.match(line)
    if record is None:
        return None
    level, name = record["level"], record["name"]
    if name.startswith(NOISE_LOGGERS):
        return None
    project = name.split(".")[0] in PROJECT_LOGGERS
    if level in SERIOUS or (level == "WARNING" and project):
        return level, record["message"]
    return None


class Console:
    """The one place `imagine up` writes to the terminal; lines from several threads never
    interleave."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            self.stream.write(text if text.endswith("\n") else text + "\n")
            self.stream.flush()

    def event(self, text: str) -> None:
        """One timestamped line."""
        self.say(f"{time.strftime('%H:%M:%S')}  {text}")

    def part_line(self, part: str, line: str, *, verbose: bool) -> None:
        """A line a part printed: all of them with --verbose, else only those worth it."""
        if verbose:
            self.say(f"[{part}] {line}")
            return
        shown = worth_showing(line)
        if shown is not None:
            level, message = shown
            self.event(f"{level.lower()} in {part}: {message}")


class ConsoleHandler(logging.Handler):
    """`imagine up`'s own log records on the console, as timestamped lines."""

    def __init__(self, console: Console, level: int) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        self.console.event(level + record.getMessage())


@dataclass(frozen=True)
class Part:
    """A running part as the ready block lists it."""

    name: str
    detail: str


@dataclass(frozen=True)
class ReadyBlock:
    parts: list[Part]
    url: str
    logs: str
    redis: str
    notes: list[str]

    def render(self) -> str:
        width = max(len(p.name) for p in self.parts) if self.parts else 0
        lines = ["imagine is ready", *(f"  {p.name.ljust(width)}  {p.detail}" for p in self.parts),
                 f"  redis: {self.redis}",
                 f"  logs: {self.logs} (--verbose also prints them here)",
                 *(f"  note: {note}" for note in self.notes),
                 f"Open {self.url} - Ctrl-C stops everything."]
        return "\n".join(lines)


def short_prompt(prompt: str) -> str:
    prompt = " ".join(prompt.split())
    return prompt if len(prompt) <= PROMPT_CHARS else prompt[:PROMPT_CHARS - 3] + "..."
