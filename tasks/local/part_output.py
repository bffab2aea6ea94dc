"""A part's output under `imagine up`: every line into DATA/logs/<part>.log, and to the
console what the console shows of it (everything with --verbose)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import IO

from tasks.local.console import Console


def log_name(part: str) -> str:
    """`generate worker gpu0` → `generate-worker-gpu0.log`."""
    return re.sub(r"[^a-z0-9]+", "-", part.lower()).strip("-") + ".log"


class PartOutput:
    """Where one part's stdout and stderr go, across its restarts (the file is appended to)."""

    def __init__(self, part: str, logs_dir: Path, console: Console | None,
                 verbose: bool = False) -> None:
        self.part = part
        self.path = logs_dir / log_name(part)
        self.console = console
        self.verbose = verbose
        self.last_line = ""

    def follow(self, stream: IO[bytes]) -> threading.Thread:
        """Read `stream` (the part's pipe) on a thread until the part and its children
        closed it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        thread = threading.Thread(target=self._copy, args=(stream,), daemon=True,
                                  name=f"output of {self.part}")
        thread.start()
        return thread

    def _copy(self, stream: IO[bytes]) -> None:
        with stream, self.path.open("ab", buffering=0) as log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                line = raw.decode(errors="replace").rstrip()
                if not line.strip():
                    continue
                self.last_line = line
                if self.console is not None:
                    self.console.part_line(self.part, line, verbose=self.verbose)
