"""Fair order of the waiting line, priority tiers, and claiming batches of jobs.

Start-time fair queuing: at admission a job gets the virtual-time tag
max(clock, tag of its user's last job) + 1, and the line is ordered by (tier, tag, submit
order). A user who queues four jobs gets tags t+1 … t+4, another user's single job t+1,
so it is drawn second, not fifth. Claiming a job advances the clock to its tag, so a user
idle for a while starts again level with the others instead of far ahead.

The three parts are packed into one sorted-set score, exact in a double (53 bits):
tier × 2^50 + tag × 2^20 + (seq mod 2^20). Tiers are 0–7 (settings.MAX_TIER); tags stay
exact up to 2^30 (a billion jobs of virtual time, ~2,000 years at 1,000 jobs a minute);
the submit counter wraps every 2^20 jobs, which can only swap two jobs of equal tier and
tag (the same virtual time), never move a job past another user's turn.
Tiers are strict: a lower tier always goes first, so a steady stream of tier-0 jobs
starves higher tiers (README, Fair scheduling).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from generator.batching import batch_key
from settings import Settings
from tasks.core import routing
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.names import (
    BATCH_SIZES_KEY,
    DURATIONS_KEY,
    FAIR_CLOCK_KEY,
    FAIR_USER_KEY,
    JOB_KEY,
    QUEUE_KEY,
    RUNNING_KEY,
    TICKET_KEY,
)

TIER_UNIT = 2**50
TAG_UNIT = 2**20

# Lua: the fair score of a job admitted now (KEYS: clock, the user's last tag; ARGV: tier,
# ttl). Shared by admission and by a requeue of a job that has no score of its own.
FAIR_SCORE = """
local function fair_score(clock_key, user_key, seq_key, tier, ttl)
  local clock = tonumber(redis.call('GET', clock_key) or '0')
  local last = tonumber(redis.call('GET', user_key) or '0')
  local tag = math.max(clock, last) + 1
  redis.call('SET', user_key, string.format('%.0f', tag), 'EX', ttl)
  local seq = redis.call('INCR', seq_key) % 1048576
  return string.format('%.0f', tier * 1125899906842624 + tag * 1048576 + seq)
end
"""

# Admission: limits, fair score and insertion in one step, so concurrent submits can
# neither overshoot a limit nor take the same tag.
# KEYS: queue, pool, seq, model set, clock, user tag. ARGV: id, max queue, limit, ttl,
# refusal code, tier. Returns {position in the whole line, refused count, score}.
ADMIT = FAIR_SCORE + """
local queued = redis.call('ZCARD', KEYS[1])
if queued >= tonumber(ARGV[2]) then return {-1, queued, ''} end
local mine = redis.call('SCARD', KEYS[2])
if mine >= tonumber(ARGV[3]) then return {tonumber(ARGV[5]), mine, ''} end
local score = fair_score(KEYS[5], KEYS[6], KEYS[3], tonumber(ARGV[6]), tonumber(ARGV[4]))
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('ZADD', KEYS[4], score, ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return {redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, 0, score}
"""

# A fresh score for a job back in line without one (queued before fair scores existed).
RESCORE = FAIR_SCORE + """
return fair_score(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]))
"""

# Inside a claim's transaction: the clock only moves forward, whoever claims at once.
ADVANCE_CLOCK = """
local clock = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > clock then redis.call('SET', KEYS[1], ARGV[1]) end
"""


def tier(requester: Requester, settings: Settings) -> int:
    """The priority tier of a requester's jobs (lower first); unknown platforms: the API's."""
    tiers = settings.tiers
    return tiers.get(requester.platform, tiers["api"])


def tag_of(score: float) -> int:
    return int(score % TIER_UNIT) // TAG_UNIT


def next_score(client: redis.Redis, requester: Requester, settings: Settings) -> float:
    """The highest score a job of `requester` submitted now could get: jobs up to it are
    ahead of that job."""
    clock, last = client.mget([FAIR_CLOCK_KEY, FAIR_USER_KEY.format(requester.user_key)])
    tag = max(int(float(clock or 0)), int(float(last or 0))) + 1
    return float(tier(requester, settings) * TIER_UNIT + tag * TAG_UNIT + TAG_UNIT - 1)


def batch_rate(client: redis.Redis, default_duration: float) -> tuple[float, float]:
    """(jobs per batch, seconds per batch) over the recent finished jobs.

    Each finished job recorded its duration (≈ its batch's) and its batch size, so a batch
    of b jobs left b samples of weight 1/b: per batch, not per job."""
    with client.pipeline(transaction=False) as pipe:
        pipe.lrange(DURATIONS_KEY, 0, -1)
        pipe.lrange(BATCH_SIZES_KEY, 0, -1)
        durations, sizes = pipe.execute()
    if not durations:
        return 1.0, default_duration
    # Durations recorded before batch sizes were: batches of one.
    weights = [1 / max(1, int(size)) for size in sizes[:len(durations)]]
    weights += [1.0] * (len(durations) - len(weights))
    batches = sum(weights)
    seconds = sum(float(d) * w for d, w in zip(durations, weights, strict=True)) / batches
    return len(durations) / batches, seconds


class Claimer:
    """`claim` of JobQueue: one WATCH/MULTI transaction over the model's waiting set and
    the records of the jobs looked at, so two claimers never take the same job and a job
    cancelled meanwhile is never taken (either one retries on the other's write)."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.redis = client

    def claim(self, model: str, drawer: str, ticket: str) -> list[Job]:
        key = routing.model_key(model)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    claimed, drained = self._attempt(pipe, key, drawer, ticket)
                except redis.WatchError:
                    continue
                if claimed or drained:
                    return claimed

    def _attempt(self, pipe: redis.client.Pipeline, key: str, drawer: str,
                 ticket: str) -> tuple[list[Job], bool]:
        """(the jobs claimed, whether the set is empty): nothing claimed and not drained
        means only dead entries were read (and dropped); the caller reads again."""
        pipe.watch(key)
        entries: list[tuple[bytes, float]] = pipe.zrange(  # type: ignore[assignment]
            key, 0, self.settings.batch_window, withscores=True)
        if not entries:
            pipe.unwatch()
            return [], True
        ids = [_text(member) for member, _ in entries]
        job_keys = [JOB_KEY.format(job_id) for job_id in ids]
        pipe.watch(*job_keys)
        waiting, dead = [], []
        for job_id, (_, score), raw in zip(ids, entries, pipe.mget(job_keys), strict=True):
            job = Job.model_validate_json(raw) if raw else None
            if job is None or job.status is not JobStatus.queued:
                dead.append(job_id)  # expired, finished, or taken by the one-job path
            else:
                waiting.append(job.model_copy(update={"queue_score": float(score)}))
        batch = self._batch(waiting)
        pipe.multi()
        for job_id in dead + [job.id for job in batch]:
            pipe.zrem(key, job_id)
            pipe.zrem(QUEUE_KEY, job_id)
        claimed = self._start(pipe, batch, drawer, ticket)
        pipe.execute()
        return claimed, False

    def _batch(self, waiting: Sequence[Job]) -> list[Job]:
        """The first waiting job, plus the jobs drawable with it among the window after it."""
        if not waiting:
            return []
        first, rest = waiting[0], waiting[1:]
        shared = batch_key(first.request)
        if shared is None:
            return [first]
        mates = [job for job in rest if job.request.model == first.request.model
                 and batch_key(job.request) == shared]
        return [first, *mates[:self.settings.max_batch - 1]]

    def _start(self, pipe: redis.client.Pipeline, batch: Sequence[Job], drawer: str,
               ticket: str) -> list[Job]:
        if not batch:
            return []
        now, ttl = time.time(), self.settings.job_ttl
        claimed = [job.model_copy(update={
            "status": JobStatus.running, "started_at": now, "attempts": job.attempts + 1,
            "step": 0, "worker": drawer, "phase": None, "batch_size": len(batch)})
            for job in batch]
        for job in claimed:
            pipe.set(JOB_KEY.format(job.id), job.model_dump_json(), ex=ttl)
        ids = [job.id for job in claimed]
        pipe.sadd(RUNNING_KEY, *ids)
        pipe.sadd(TICKET_KEY.format(ticket), *ids)
        pipe.expire(TICKET_KEY.format(ticket), ttl)
        tag = max(tag_of(job.queue_score or 0.0) for job in claimed)
        pipe.eval(ADVANCE_CLOCK, 1, FAIR_CLOCK_KEY, tag)
        return claimed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
