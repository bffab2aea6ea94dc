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

# A claim's commit, checked and applied in one step. The claimer read the line and the job
# records, chose in Python (batch keys need the request); this applies its choice only if
# every chosen job is still waiting with the record read, else returns 0 and the claimer
# reads again. Entries found dead are dropped only if their record is still as read (a
# job requeued meanwhile stays). New submits do not disturb a claim, as a WATCH would.
# KEYS: model set, queue, running, ticket, clock, the dead jobs' records, the claimed
# jobs' records. ARGV: ttl, tag, number of dead, their ids, their records as read ('' for
# none), then per claimed job: id, record as read, record as running.
CLAIM = """
local ttl, nd = tonumber(ARGV[1]), tonumber(ARGV[3])
local nc = #KEYS - 5 - nd
local base = 3 + 2 * nd
for i = 1, nc do
  local id, old = ARGV[base + 3 * i - 2], ARGV[base + 3 * i - 1]
  if not redis.call('ZSCORE', KEYS[1], id) or redis.call('GET', KEYS[5 + nd + i]) ~= old then
    return 0
  end
end
for i = 1, nd do
  local id = ARGV[3 + i]
  if (redis.call('GET', KEYS[5 + i]) or '') == ARGV[3 + nd + i] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
for i = 1, nc do
  local id = ARGV[base + 3 * i - 2]
  redis.call('SET', KEYS[5 + nd + i], ARGV[base + 3 * i], 'EX', ttl)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('SADD', KEYS[3], id)
  redis.call('SADD', KEYS[4], id)
end
if nc > 0 then
  redis.call('EXPIRE', KEYS[4], ttl)
  local clock = tonumber(redis.call('GET', KEYS[5]) or '0')
  if tonumber(ARGV[2]) > clock then redis.call('SET', KEYS[5], ARGV[2]) end
end
return 1
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
    """`claim` of JobQueue: read the head of the model's line and its records, choose the
    batch, commit with the CLAIM script, which refuses if any chosen job was taken,
    cancelled or changed meanwhile; then read again. Two claimers never take the same job
    and a job cancelled meanwhile is never taken."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.redis = client
        self._commit = client.register_script(CLAIM)

    def claim(self, model: str, drawer: str, ticket: str) -> list[Job]:
        key = routing.model_key(model)
        while True:
            outcome = self._attempt(key, drawer, ticket)
            if outcome is not None:
                return outcome

    def _attempt(self, key: str, drawer: str, ticket: str) -> list[Job] | None:
        """The jobs claimed ([]: none waits), or None to read again: the line changed under
        the choice, or only dead entries were read (and dropped)."""
        entries: list[tuple[bytes, float]] = self.redis.zrange(  # type: ignore[assignment]
            key, 0, self.settings.batch_window, withscores=True)
        if not entries:
            return []
        ids = [_text(member) for member, _ in entries]
        raws = [_text(raw) if raw else "" for raw in self.redis.mget(
            [JOB_KEY.format(job_id) for job_id in ids])]
        waiting: list[tuple[Job, str]] = []
        dead: list[tuple[str, str]] = []
        for job_id, (_, score), raw in zip(ids, entries, raws, strict=True):
            job = Job.model_validate_json(raw) if raw else None
            if job is None or job.status is not JobStatus.queued:
                dead.append((job_id, raw))  # expired, finished, or taken by the one-job path
            else:
                waiting.append((job.model_copy(update={"queue_score": float(score)}), raw))
        batch = self._batch(waiting)
        claimed = self._running(batch, drawer)
        tag = max((tag_of(job.queue_score or 0.0) for job in claimed), default=0)
        keys = [key, QUEUE_KEY, RUNNING_KEY, TICKET_KEY.format(ticket), FAIR_CLOCK_KEY,
                *(JOB_KEY.format(job_id) for job_id, _ in dead),
                *(JOB_KEY.format(job.id) for job in claimed)]
        args: list[str | int] = [self.settings.job_ttl, tag, len(dead),
                                 *(job_id for job_id, _ in dead), *(raw for _, raw in dead)]
        for job, (_, raw) in zip(claimed, batch, strict=True):
            args += [job.id, raw, job.model_dump_json()]
        if not self._commit(keys=keys, args=args) or not claimed:
            return None
        return claimed

    def _batch(self, waiting: Sequence[tuple[Job, str]]) -> list[tuple[Job, str]]:
        """The first waiting job, plus the jobs drawable with it among the window after it."""
        if not waiting:
            return []
        first, rest = waiting[0], waiting[1:]
        shared = batch_key(first[0].request)
        if shared is None:
            return [first]
        mates = [entry for entry in rest if batch_key(entry[0].request) == shared]
        return [first, *mates[:self.settings.max_batch - 1]]

    def _running(self, batch: Sequence[tuple[Job, str]], drawer: str) -> list[Job]:
        """The batch's jobs as claimed: running under `drawer`, a new attempt each."""
        now = time.time()
        return [job.model_copy(update={
            "status": JobStatus.running, "started_at": now, "attempts": job.attempts + 1,
            "step": 0, "worker": drawer, "phase": None, "batch_size": len(batch)})
            for job, _ in batch]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
