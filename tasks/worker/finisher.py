"""The finishing thread: what follows a pipeline call, done while the next one draws.

Encoding PNGs, writing them to storage, recording each job and handing it to delivery cost
real time per image (a 512 px PNG ~140 ms on a CPU), and none of it needs the GPU. The
drawing thread hands each batch's results here and claims the next batch at once; one
thread per worker process does the batches in the order they were drawn. Its queue holds at
most CAPACITY batches besides the one it works on, so a slow disk slows the drawing down
instead of piling results up in memory. A task acknowledges its message only after
`drain()`: a worker killed with results still here gets the message again, and the jobs
recorded as running under it are drawn again (tasks.worker.batch_runner).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

CAPACITY = 1

Work = Callable[[], None]


class Finisher:
    """A bounded FIFO of finishing work and the one thread doing it, per process."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[Work] = queue.Queue(maxsize=capacity)

    def submit(self, work: Work) -> None:
        """Queue `work`; blocks only while CAPACITY batches already wait."""
        self._started().put(work)

    def drain(self) -> None:
        """Return once everything submitted so far is done."""
        if self._pid == os.getpid():
            self._queue.join()

    def _started(self) -> queue.Queue[Work]:
        # A thread does not survive a fork: a prefork child starts its own on first use.
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue = queue.Queue(maxsize=self.capacity)
                threading.Thread(target=self._loop, args=(self._queue,), name="finisher",
                                 daemon=True).start()
            return self._queue

    @staticmethod
    def _loop(work_queue: queue.Queue[Work]) -> None:
        while True:
            work = work_queue.get()
            try:
                work()
            except Exception:  # one batch's failure must not stop the ones after it
                log.exception("finishing a batch failed; its jobs are left to the reaper")
            finally:
                work_queue.task_done()
