"""A daemon thread of `imagine up`'s console that runs until its `stop()`."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import TypeVar

T = TypeVar("T", bound="Background")


class Background(ABC):
    """Subclasses write `_run`, which returns once `self._stop` is set."""

    name = "background"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=self.name)

    def start(self: T) -> T:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)

    @abstractmethod
    def _run(self) -> None:
        """The thread's work, until `self._stop` is set."""
