"""The hot calls (health, submit, poll, a prompt URL miss) cost the same number of Redis
commands whatever else Redis holds: queue depth, running jobs, positions and live workers
come from structures kept for them, never from scanning the keyspace.

The web app is served in this process over real HTTP against a real Redis; workers are
represented by their real heartbeat (no worker process is needed to count commands).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import count

import pytest
import redis
import requests

from settings import Settings
from tasks.core.connection import redis_client
from tasks.names import GENERATE_QUEUE, URL_CACHE_KEY
from tasks.worker.heartbeat import Heartbeat

UNRELATED_KEYS = 100_000
# Commands whose count depends on timing, not on the keyspace: metrics flushed by a timer
# thread, and the measuring itself.
TIMED = {"hincrby", "info", "ping", "zadd"}
JSON = {"Accept": "application/json"}


# What a new connection sends: how many connections a pool opens depends on the web server's
# threads and timing, not on the keyspace, so these are left out of the comparison.
HANDSHAKE = frozenset({"hello", "client|setinfo", "auth", "select"})


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    return {name: n for name, n in calls.items() if name not in HANDSHAKE}


def fill(client: redis.Redis, keys: int) -> None:
    """`keys` prompt-URL cache entries, as a busy server accumulates them."""
    entry = json.dumps({"job": "0" * 24, "image": "0" * 32, "at": 0.0})
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, keys, 10_000):
            pipe.mset({URL_CACHE_KEY.format(f"{i:064x}"): entry
                       for i in range(start, min(keys, start + 10_000))})
        pipe.execute()


@pytest.fixture
def beating(settings: Settings) -> Iterator[None]:
    beats = [Heartbeat(redis_client(settings), f"{GENERATE_QUEUE}-{n}@test", [GENERATE_QUEUE])
             for n in range(3)]
    for beat in beats:
        beat.beat()
    yield
    for beat in beats:
        beat.stop()


def test_hot_calls_issue_the_same_commands_with_100k_unrelated_keys(
        serve_app: Callable[..., str], settings: Settings, beating: None) -> None:
    base = serve_app(embed_wait=0.0)
    client = redis_client(settings)
    prompts = count()

    def hot_calls() -> None:
        health = requests.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["generate_workers"] == 3
        posted = requests.post(f"{base}/api/v1/jobs", json={"prompt": f"a fox {next(prompts)}"},
                               timeout=10)
        assert posted.status_code == 202, posted.text
        polled = requests.get(f"{base}/api/v1/jobs/{posted.json()['id']}", timeout=10)
        assert polled.status_code == 200 and polled.json()["status"] == "queued"
        miss = requests.get(f"{base}/", params={"prompt": f"a lighthouse {next(prompts)}"},
                            headers=JSON, timeout=10)
        assert miss.status_code == 202, miss.text

    def measured() -> dict[str, int]:
        before = command_calls(client)
        hot_calls()
        after = command_calls(client)
        return {name: after[name] - before.get(name, 0) for name in after
                if name not in TIMED and after[name] != before.get(name, 0)}

    hot_calls()  # first calls load scripts, declare queues, open connections
    small = measured()
    fill(client, UNRELATED_KEYS)
    assert client.dbsize() > UNRELATED_KEYS
    large = measured()
    assert not {"scan", "keys"} & (small.keys() | large.keys()), large
    assert large == small
