"""When `imagine up` is ready, and the block that says so.

Ready means the web server answers /healthz with every planned generate worker and a deliver
worker alive — the same check a load balancer makes, so "ready" is never claimed early.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from settings import Settings
from settings.errors import ImagineError
from tasks.core.routing import served_models
from tasks.local.background import Background
from tasks.local.console import Console, Part, ReadyBlock
from tasks.local.gpus import GenerateWorker
from tasks.names import DELIVER_QUEUE, GENERATE_QUEUE

POLL_SECONDS = 0.5
SLOW_AFTER = 90.0  # a real model on a cold disk can take this long; then say what waits


def local_url(settings: Settings) -> str:
    """The address to open on this machine (a wildcard bind is reached on loopback)."""
    host = settings.web_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.web_port}/"


def health(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=2) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:  # 503: not healthy yet, the body says what
        try:
            return json.loads(exc.read())  # type: ignore[no-any-return]
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def missing(state: dict[str, object] | None, generate: int) -> str | None:
    """What is not ready yet in a /healthz answer; None when everything is."""
    if state is None:
        return "the web server"
    if not state.get("redis"):
        return "Redis"
    have = int(state.get("generate_workers", 0) or 0)  # type: ignore[call-overload]
    if have < generate:
        return f"generate workers ({have} of {generate} up; the first loads the model)"
    if not int(state.get("deliver_workers", 0) or 0):  # type: ignore[call-overload]
        return "the deliver worker"
    return None


@dataclass(frozen=True)
class Layout:
    """What `imagine up` started, for the ready block."""

    workers: Sequence[GenerateWorker]
    redis: str
    logs: str
    bots: Sequence[str]
    extra: Sequence[str] = ()  # other parts, e.g. "gc"


def ready_block(settings: Settings, layout: Layout) -> ReadyBlock:
    try:
        models = ", ".join(served_models(settings))
    except ImagineError as exc:
        models = exc.message
    parts = [Part(w.name, f"queue {GENERATE_QUEUE}, models {models}, on "
                          f"{f'cuda:{w.gpu}' if w.gpu is not None else settings.device}")
             for w in layout.workers]
    parts.append(Part("deliver worker", f"queue {DELIVER_QUEUE}"))
    parts.append(Part("web", f"{local_url(settings)} (public URL {settings.public_url})"))
    for bot in ("slack", "discord"):
        parts.append(Part(bot, "connected to its token" if bot in layout.bots
                          else "not configured"))
    parts.extend(Part(name, "running") for name in layout.extra)
    notes = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        notes.append("running as root. Celery advises running workers as an ordinary user "
                     "(its --uid option); its per-worker warning about it is in the logs.")
    return ReadyBlock(parts, local_url(settings), layout.logs, layout.redis, notes)


class ReadyWatch(Background):
    """A daemon thread: prints the ready block once everything is up, and says what it is
    waiting for if that takes long."""

    name = "ready watch"

    def __init__(self, settings: Settings, layout: Layout, console: Console) -> None:
        self.settings = settings
        self.layout = layout
        self.console = console
        self.ready = threading.Event()
        super().__init__()

    def _run(self) -> None:
        url = local_url(self.settings)
        waited, warned = 0.0, False
        while not self._stop.is_set():
            waiting = missing(health(url), len(self.layout.workers))
            if waiting is None:
                self.console.say(ready_block(self.settings, self.layout).render())
                self.ready.set()
                return
            if waited >= SLOW_AFTER and not warned:
                warned = True
                self.console.event(f"still starting: waiting for {waiting}; see "
                                   f"{self.layout.logs}")
            self._stop.wait(POLL_SECONDS)
            waited += POLL_SECONDS
