"""Keeps the parts of `imagine up` running: restarts what dies, stops everything on Ctrl-C."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tasks.local.part_output import PartOutput

log = logging.getLogger("imagine.up")

RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a child up this long has its restart backoff reset
POLL_SECONDS = 0.5
GRACE_SECONDS = 10.0


def _die_with_parent() -> None:
    """Linux: children get SIGTERM if `imagine up` itself is killed, so none is orphaned."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Service:
    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 1.0
    restart_at: float = 0.0
    restarts: int = 0
    # Where its stdout and stderr go (log file, console); None: inherited from `imagine up`.
    output: PartOutput | None = None

    def start(self) -> None:
        piped = subprocess.PIPE if self.output is not None else None
        self.process = subprocess.Popen(
            list(self.argv),
            env={**os.environ, **self.env},
            stdout=piped,
            stderr=subprocess.STDOUT if piped else None,
            # Own session: Ctrl-C reaches only the supervisor, which stops children in order.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        if self.output is not None and self.process.stdout is not None:
            self.output.follow(self.process.stdout)
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.process.pid)

    def why(self) -> str:
        """Where to look when it stopped: its last line and its log file."""
        if self.output is None:
            return ""
        last = f": {self.output.last_line[-200:]}" if self.output.last_line else ""
        return f" (last line{last}; full log {self.output.path})" if last else \
            f" (full log {self.output.path})"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, services: Sequence[Service]) -> None:
        self.services = list(services)
        self.stopping = False

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for service in self.services:
                service.start()
            while not self.stopping:
                self._restart_dead()
                time.sleep(POLL_SECONDS)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _request_stop(self, signum: int, _frame: object) -> None:
        if self.stopping:
            log.warning("second interrupt: killing everything now")
            for service in self.services:
                if service.alive():
                    service.process.kill()  # type: ignore[union-attr]
        self.stopping = True

    def _restart_dead(self) -> None:
        now = time.monotonic()
        for service in self.services:
            if service.alive() or service.process is None:
                continue
            if service.restart_at == 0.0:
                code = service.process.returncode
                if now - service.started_at > STABLE_AFTER:
                    service.backoff = 1.0
                service.restart_at = now + service.backoff
                log.warning("%s exited with %s; restarting in %.0f s%s", service.name, code,
                            service.backoff, service.why())
                service.backoff = min(service.backoff * 2, RESTART_BACKOFF_MAX)
            elif now >= service.restart_at:
                service.restart_at = 0.0
                service.restarts += 1
                service.start()

    def stop(self) -> None:
        """SIGTERM everyone (workers finish or hand back their job), then SIGKILL stragglers."""
        self.stopping = True
        running = [s for s in self.services if s.alive()]
        for service in running:
            service.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + GRACE_SECONDS
        for service in running:
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", service.name, GRACE_SECONDS)
                service.process.kill()  # type: ignore[union-attr]
                service.process.wait()  # type: ignore[union-attr]
