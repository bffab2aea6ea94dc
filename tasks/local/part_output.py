"""A part's output under `imagine up`: every line into DATA/logs/<part>.log, and to the
console what the console shows of it (everything with --verbose)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import IO

from tasks.local.console import Console

# A log bigger than this when `imagine up` starts is moved to <part>.log.1 (one old copy kept).
ROTATE_BYTES = 20 * 1024 * 1024

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
        self._threads: list[threading.Thread] = []
        if self.path.exists() and self.path.stat().st_size > ROTATE_BYTES:
            self.path.replace(self.path.with_name(self.path.name + ".1"))

    def follow(self, stream: IO[bytes]) -> threading.Thread:
        """Read `stream` (the part's pipe) on a thread until the part and its children
        closed it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        thread = threading.Thread(target=self._copy, args=(stream,), daemon=True,
                                  name=f"output of {self.part}")
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        return thread

    def drain(self, timeout: float) -> None:
        """Wait (a little) for the last lines of stopped parts, so the log keeps them."""
        for thread in self._threads:
            thread.join(timeout)

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
