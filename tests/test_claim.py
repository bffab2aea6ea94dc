"""JobQueue.claim on a real Redis: a worker takes the first waiting job of its model in fair
order plus compatible jobs within the window, atomically against other claimers and
cancels. No worker process is needed: the test claims as a worker would."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from settings import Settings
from tasks.core.jobs import JobStatus
from tasks.core.queue import JobQueue
from tasks.names import FAIR_CLOCK_KEY, RUNNING_KEY, TICKET_KEY
from tests.test_queue import make_job, make_queue

SMALL: dict[str, Any] = {"width": 64, "height": 64}
LARGE: dict[str, Any] = {"width": 128, "height": 64}  # another size: never in the same pipeline call


def claiming_queue(imagine_env: dict[str, str], **fields: Any) -> JobQueue:
    settings = Settings(_env_file=None, models={"other": "/models/other"},  # type: ignore[call-arg,dict-item]
                        max_jobs_per_user=50, max_queue=500, **fields)
    return make_queue(settings)


def submit_all(queue: JobQueue, sizes: list[dict[str, Any]], user: str = "alice") -> list[str]:
    return [queue.submit(make_job(user=user, **size)).job_id for size in sizes]


def members(queue: JobQueue, key: str) -> set[str]:
    return {member.decode() for member in queue.redis.smembers(key)}  # type: ignore[union-attr]


def test_claim_takes_compatible_jobs_within_the_window_up_to_max_batch(
        imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=3, batch_window=4)
    # One user, so fair order is submit order: s0 L1 s2 L3 s4 s5 s6.
    ids = submit_all(queue, [SMALL, LARGE, SMALL, LARGE, SMALL, SMALL, SMALL])
    first = queue.claim("default", "gpu-a:1", "ticket-a")
    # s0 with the small ones among the next 4 (L1 s2 L3 s4), at most 3 in all.
    assert [job.id for job in first] == [ids[0], ids[2], ids[4]]
    for job in first:
        stored = queue.jobs.get(job.id)
        assert stored.status is JobStatus.running and stored.batch_size == 3
        assert stored.worker == "gpu-a:1" and stored.attempts == 1 and stored.started_at
        assert stored.queue_score is not None and queue.position(job.id) is None
    assert members(queue, TICKET_KEY.format("ticket-a")) == {ids[0], ids[2], ids[4]}
    assert queue.redis.ttl(TICKET_KEY.format("ticket-a")) > 0
    assert queue.running_count() == 3
    # L1 comes first now, and L3 is within its window: both go.
    assert [job.id for job in queue.claim("default", "gpu-a:1", "t2")] == [ids[1], ids[3]]
    assert [job.id for job in queue.claim("default", "gpu-a:1", "t3")] == [ids[5], ids[6]]
    assert queue.claim("default", "gpu-a:1", "t4") == []
    assert queue.queued_count() == 0


def test_a_job_beyond_the_window_is_not_overtaken_by_more_than_the_window(
        imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=4, batch_window=2)
    ids = submit_all(queue, [SMALL, LARGE, LARGE, SMALL])
    # s3 is 3 places behind s0: outside a window of 2, so it waits for its turn.
    assert [job.id for job in queue.claim("default", "w:1", "t")] == [ids[0]]
    assert [job.id for job in queue.claim("default", "w:1", "t")] == [ids[1], ids[2]]


def test_claim_skips_cancelled_and_expired_jobs_and_other_models(
        imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=4, batch_window=8)
    ids = submit_all(queue, [SMALL, SMALL, SMALL, SMALL])
    other = queue.submit(make_job(model="other")).job_id
    queue.cancel(ids[0])
    queue.redis.delete(f"imagine:job:{ids[1]}")  # its record expired
    claimed = queue.claim("default", "w:1", "t")
    assert [job.id for job in claimed] == [ids[2], ids[3]]
    assert queue.redis.zcard("imagine:queue:default") == 0  # the dead entries are gone
    assert queue.jobs.get(ids[0]).status is JobStatus.cancelled
    assert [job.id for job in queue.claim("other", "w:1", "t")] == [other]


def test_jobs_that_must_be_drawn_alone_are_claimed_alone(imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=4, batch_window=8)
    alone = queue.submit(make_job(mode="upscale", source_image="a" * 32 + ".png")).job_id
    ids = submit_all(queue, [SMALL, SMALL])
    assert [job.id for job in queue.claim("default", "w:1", "t")] == [alone]
    assert queue.jobs.get(alone).batch_size == 1
    assert [job.id for job in queue.claim("default", "w:1", "t")] == ids


def test_max_batch_one_claims_one_job_at_a_time(imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=1)
    ids = submit_all(queue, [SMALL, SMALL])
    assert [job.id for job in queue.claim("default", "w:1", "t")] == [ids[0]]


def test_the_fair_clock_advances_to_the_claimed_tag(imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=1)
    submit_all(queue, [SMALL, SMALL, SMALL])
    queue.claim("default", "w:1", "t")
    queue.claim("default", "w:1", "t")
    assert int(queue.redis.get(FAIR_CLOCK_KEY) or 0) == 2
    # A newcomer starts level with the clock (tag 3, as alice's last job), not at tag 1
    # ahead of everyone who waited: after alice's job of the same turn, submitted first.
    late = queue.submit(make_job(user="bob")).job
    assert late.queue_score is not None and queue.position(late.id) == 2


def test_concurrent_claimers_never_take_the_same_job(imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=3, batch_window=4)
    ids = set()
    for user in range(4):
        ids.update(submit_all(queue, [SMALL, LARGE] * 10, user=f"user{user}"))
    taken: list[list[str]] = [[] for _ in range(6)]

    def claimer(index: int) -> None:
        own = make_queue(queue.settings)  # own connections, as separate workers have
        while batch := own.claim("default", f"w{index}:1", f"ticket-{index}"):
            taken[index].extend(job.id for job in batch)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [job_id for ids_ in taken for job_id in ids_]
    assert len(every) == len(set(every)) == len(ids) == 80
    assert set(every) == ids
    assert queue.redis.scard(RUNNING_KEY) == 80
    for index, own in enumerate(taken):
        assert members(queue, TICKET_KEY.format(f"ticket-{index}")) == set(own)
    assert all(queue.jobs.get(job_id).attempts == 1 for job_id in ids)


def test_cancel_racing_a_claim_either_wins_cleanly(imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=4, batch_window=8)
    ids = submit_all(queue, [SMALL] * 40)
    claimed: list[str] = []

    def claim_all() -> None:
        own = make_queue(queue.settings)
        while batch := own.claim("default", "w:1", "t"):
            claimed.extend(job.id for job in batch)

    thread = threading.Thread(target=claim_all)
    thread.start()
    outcomes = [make_queue(queue.settings).cancel(job_id).status for job_id in reversed(ids)]
    thread.join(60)
    for job_id, outcome in zip(reversed(ids), outcomes, strict=True):
        stored = queue.jobs.get(job_id)
        if job_id in claimed:  # claimed first: running, asked to stop at its next step
            assert outcome is JobStatus.running and stored.status is JobStatus.running
            assert queue.cancel_requested(job_id)
        else:
            assert outcome is stored.status is JobStatus.cancelled
    assert queue.queued_count() == 0


@pytest.mark.parametrize("model", ["default", "other"])
def test_claim_of_an_empty_line_returns_nothing(imagine_env: dict[str, str], model: str) -> None:
    queue = claiming_queue(imagine_env)
    assert queue.claim(model, "w:1", "t") == []
    assert not queue.redis.exists(TICKET_KEY.format("t"))


def test_claims_and_submits_at_once_take_every_job_exactly_once(
        imagine_env: dict[str, str]) -> None:
    queue = claiming_queue(imagine_env, max_batch=4, batch_window=8)
    submitted: list[str] = []
    taken: list[list[str]] = [[] for _ in range(3)]
    done = threading.Event()

    def submitter(user: int) -> None:
        own = make_queue(queue.settings)
        for n in range(15):
            submitted.append(own.submit(make_job(user=f"u{user}", **(SMALL, LARGE)[n % 2])).job_id)

    def claimer(index: int) -> None:
        own = make_queue(queue.settings)
        while True:
            finished = done.is_set()  # read before claiming: a last empty claim after it
            batch = own.claim("default", f"w{index}:1", f"ticket-{index}")
            taken[index].extend(job.id for job in batch)
            if not batch and finished:
                return

    submitters = [threading.Thread(target=submitter, args=(u,)) for u in range(3)]
    claimers = [threading.Thread(target=claimer, args=(i,)) for i in range(3)]
    for thread in submitters + claimers:
        thread.start()
    for thread in submitters:
        thread.join(60)
    done.set()
    for thread in claimers:
        thread.join(60)
    every = [job_id for own in taken for job_id in own]
    assert sorted(every) == sorted(submitted) and len(submitted) == 45
    assert queue.queued_count() == 0 and queue.running_count() == 45
