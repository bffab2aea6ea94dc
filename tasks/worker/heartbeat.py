"""Worker heartbeats in Redis, so `/healthz` and wait estimates know who is alive."""

from __future__ import annotations

import json
import os
import threading
import time

import redis

from tasks.names import WORKERS_KEY

INTERVAL = 5.0
TTL = 15  # three missed beats and the worker counts as gone


class Heartbeat:
    def __init__(self, client: redis.Redis, hostname: str, queues: list[str]) -> None:
        self.redis = client
        self.key = WORKERS_KEY.format(hostname)
        self.info = {"hostname": hostname, "queues": queues, "pid": os.getpid()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imagine-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        self.redis.set(self.key, json.dumps({**self.info, "seen": time.time()}), ex=TTL)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            try:
                self.beat()
            except redis.RedisError:
                pass  # Redis restarting: the next beat will tell

    def stop(self) -> None:
        self._stop.set()
        try:
            self.redis.delete(self.key)
        except redis.RedisError:
            pass
