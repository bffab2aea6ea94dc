"""Deliveries that nobody carries out any more are handed out again.

A deliver message can vanish: its worker killed mid-task, a broker restart while the
message was held, a worker that died with the connection. Every hand-off therefore notes
when its delivery would count as lost (DELIVERY_DUE_KEY, a sorted set bounded by the
deliveries in flight); the deliver task clears the note when the job is delivered (or can
never be) and pushes it back whenever it schedules a retry, and the reaper sends a fresh
deliver message for every note past due. Delivery does each step once per job, so a
delivery sent again while the first still runs posts nothing twice.
"""

from __future__ import annotations

import redis

from tasks.names import DELIVERY_DUE_KEY

# A delivery not finished, and not waiting for a scheduled retry, this long after it was
# handed out is taken as lost. Longer than a delivery step takes in practice; a duplicate
# sent while one still runs waits for the delivery lock and then finds the job delivered.
LOST_AFTER = 30.0
# Notes the reaper handles in one round.
BATCH = 100


def _now(client: redis.Redis) -> float:
    seconds, micros = client.time()  # type: ignore[misc]
    return float(seconds) + float(micros) / 1e6


def expect(client: redis.Redis, job_id: str, wait: float = 0.0) -> None:
    """Job `job_id`'s delivery is under way (or retried in `wait` seconds)."""
    client.zadd(DELIVERY_DUE_KEY, {job_id: _now(client) + wait + LOST_AFTER})


def settle(client: redis.Redis, job_id: str) -> None:
    """The delivery ended: delivered, or never deliverable."""
    client.zrem(DELIVERY_DUE_KEY, job_id)


def overdue(client: redis.Redis) -> list[str]:
    """The jobs whose delivery counts as lost, oldest first."""
    raw = client.zrangebyscore(DELIVERY_DUE_KEY, "-inf", _now(client), start=0, num=BATCH)
    return [value.decode() if isinstance(value, bytes) else str(value)
            for value in raw]  # type: ignore[union-attr]
