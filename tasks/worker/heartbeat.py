"""Worker heartbeats in Redis, so `/healthz`, wait estimates and the reaper know who is alive.

Each beat writes the worker's details (a key with a TTL) and its expiry in one sorted set,
so "who is alive" is one range query instead of a scan of the keyspace. After each beat the
worker may run a chore (the reaper), on the same thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

import redis

from tasks.core.queue import server_time
from tasks.names import WORKER_BEATS_KEY, WORKER_LOADED_KEY, WORKERS_KEY

log = logging.getLogger(__name__)

INTERVAL = 5.0
TTL = 15  # three missed beats and the worker counts as gone
FORGET_SECONDS = 24 * 3600  # entries of workers gone this long leave the sorted set


class Heartbeat:
    def __init__(self, client: redis.Redis, hostname: str, queues: list[str], *,
                 after_beat: Callable[[], object] | None = None,
                 models: Sequence[str] | None = None) -> None:
        self.redis = client
        self.hostname = hostname
        self.key = WORKERS_KEY.format(hostname)
        self.info: dict[str, object] = {"hostname": hostname, "queues": queues,
                                        "pid": os.getpid()}
        if models is not None:
            # The models a generate worker serves: positions and ETAs count by them.
            self.info["models"] = list(models)
        self.after_beat = after_beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imagine-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        now = server_time(self.redis)
        info = {**self.info, "seen": time.time()}
        if "models" in info:
            # Written by the drawing child process (report_loaded), which holds the models.
            raw = self.redis.get(WORKER_LOADED_KEY.format(self.hostname))
            info["loaded"] = json.loads(raw) if raw else []
        with self.redis.pipeline() as pipe:
            pipe.set(self.key, json.dumps(info), ex=TTL)
            pipe.zadd(WORKER_BEATS_KEY, {self.hostname: now + TTL})
            pipe.zremrangebyscore(WORKER_BEATS_KEY, "-inf", now - FORGET_SECONDS)
            pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            try:
                self.beat()
                if self.after_beat is not None:
                    self.after_beat()
            except redis.RedisError:
                pass  # Redis restarting: the next beat will tell
            except Exception:  # the heartbeat must outlive any chore's bug
                log.exception("heartbeat chore failed")

    def stop(self) -> None:
        self._stop.set()
        try:
            with self.redis.pipeline() as pipe:
                pipe.delete(self.key, WORKER_LOADED_KEY.format(self.hostname))
                pipe.zrem(WORKER_BEATS_KEY, self.hostname)
                pipe.execute()
        except redis.RedisError:
            pass


def report_loaded(client: redis.Redis, hostname: str, models: Sequence[str]) -> None:
    """What a generate worker's child holds on its device, for the next heartbeat to show."""
    client.set(WORKER_LOADED_KEY.format(hostname), json.dumps(list(models)), ex=FORGET_SECONDS)
