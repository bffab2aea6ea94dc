"""Fair order, priority tiers, positions and ETAs on a real Redis (tasks/core/scheduler.py).

Jobs are claimed as a worker would (JobQueue.claim); no worker process is needed."""

from __future__ import annotations

from typing import Any

import pytest

from settings import Settings, load_settings
from settings.errors import ConfigError
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import DEFAULT_DURATION, JobQueue
from tasks.core.scheduler import TAG_UNIT, TIER_UNIT, tag_of
from tasks.worker.heartbeat import Heartbeat
from tests.test_queue import make_job, make_queue


def fair_queue(imagine_env: dict[str, str], **fields: Any) -> JobQueue:
    settings = Settings(_env_file=None, max_jobs_per_user=50, max_queue=500,  # type: ignore[call-arg]
                        **{"max_batch": 1, **fields})
    return make_queue(settings)


def owner(queue: JobQueue, job: Job) -> str:
    return queue.jobs.get(job.id).requester.user_key


def claim_order(queue: JobQueue) -> list[Job]:
    claimed = []
    while batch := queue.claim("default", "w:1", "t"):
        claimed.extend(batch)
    return claimed


def test_users_take_turns_whoever_queued_first(imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env)
    users = ["ann", "bob", "cat", "dan"]
    for user in users:  # each user queues 4 jobs in a row
        for n in range(4):
            queue.submit(make_job(user=user, prompt=f"{user} {n}"))
    claimed = claim_order(queue)
    assert [job.requester.user for job in claimed] == users * 4
    # Within one user's jobs, their own submit order.
    assert [job.request.prompt for job in claimed if job.requester.user == "ann"] == [
        f"ann {n}" for n in range(4)]


def test_a_single_job_is_not_delayed_by_another_users_burst(
        imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env)
    burst = [queue.submit(make_job(user="ann")) for _ in range(4)]
    single = queue.submit(make_job(user="bob"))
    assert single.position == 2  # not 5
    assert [s.position for s in burst] == [1, 2, 3, 4]  # as told at submit
    assert [queue.position(s.job_id) for s in burst] == [1, 3, 4, 5]
    assert [job.id for job in claim_order(queue)][:2] == [burst[0].job_id, single.job_id]


def test_next_position_reflects_the_users_own_waiting_jobs(imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env)
    for _ in range(4):
        queue.submit(make_job(user="ann"))
    ann, bob = Requester(platform="api", user="ann"), Requester(platform="api", user="bob")
    assert queue.next_position("default", ann) == 5
    assert queue.next_position("default", bob) == 2
    assert queue.next_position("default") == 5  # no requester: the end of the line
    # Told before submitting, true after.
    assert queue.submit(make_job(user="bob")).position == 2
    assert queue.next_position("default", Requester(platform="slack", user="cat")) == 1


def test_positions_match_the_claim_order(imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env)
    submitted = [queue.submit(make_job(user=user, platform=platform))
                 for user, platform in [("a", "api"), ("a", "api"), ("w", "web"), ("b", "api"),
                                        ("s", "slack"), ("a", "api"), ("s", "slack")]]
    by_position = sorted(submitted, key=lambda s: queue.position(s.job_id) or 0)
    assert sorted(queue.position(s.job_id) or 0 for s in submitted) == list(range(1, 8))
    assert [job.id for job in claim_order(queue)] == [s.job_id for s in by_position]


def test_chat_goes_before_the_api_and_the_api_before_prompt_urls(
        imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env)
    web = queue.submit(make_job(user="10.0.0.0/24", platform="web"))
    api = queue.submit(make_job(user="10.0.1.0/24", platform="api"))
    slack = queue.submit(make_job(user="U1", platform="slack"))
    discord = queue.submit(make_job(user="42", platform="discord"))
    assert (slack.position, discord.position) == (1, 2)
    assert [queue.position(s.job_id) for s in (web, api, slack, discord)] == [4, 3, 1, 2]
    assert [job.requester.platform for job in claim_order(queue)] == [
        "slack", "discord", "api", "web"]
    assert tag_of(slack.job.queue_score or 0) == 1  # each user's first turn
    assert (web.job.queue_score or 0) // TIER_UNIT == 2


def test_the_api_tier_is_configurable(imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env, priority={"api": 0, "slack": 1})
    slack = queue.submit(make_job(user="U1", platform="slack"))
    api = queue.submit(make_job(user="token", platform="api"))
    webhook = queue.submit(make_job(user="token", platform="webhook"))
    assert [job.id for job in claim_order(queue)] == [api.job_id, slack.job_id, webhook.job_id]


def test_priority_variable_is_parsed_and_bad_values_are_named(
        clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_PRIORITY", "api=0, web=3")
    assert load_settings().tiers == {"slack": 0, "discord": 0, "cli": 0, "api": 0,
                                     "webhook": 1, "web": 3}
    for bad in ("api:0", "apii=0", "api=8", "api=-1", "web=first"):
        monkeypatch.setenv("IMAGINE_PRIORITY", bad)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        message = caught.value.message
        assert message.startswith("IMAGINE_PRIORITY=") and "platform=tier" in message
        assert "tiers 0 (first) to 7" in message


def test_a_requeued_job_keeps_its_place(imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env)
    first = queue.submit(make_job(user="ann"))
    others = [queue.submit(make_job(user=user)) for user in ("bob", "cat", "ann")]
    [taken] = queue.claim("default", "w:1", "t")
    assert taken.id == first.job_id and taken.queue_score == first.job.queue_score
    assert queue.jobs.get(taken.id).queue_score == first.job.queue_score
    # Its worker dies; the reaper puts it back: first in line again, not behind the others.
    assert queue.requeue(taken.id).status is JobStatus.queued
    assert queue.position(taken.id) == 1
    assert [queue.position(s.job_id) for s in others] == [2, 3, 4]
    again = queue.claim("default", "w:2", "t2")
    assert [job.id for job in again] == [first.job_id] and again[0].attempts == 2


def test_a_requeued_job_started_by_the_one_job_path_keeps_its_place_too(
        imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env)
    first = queue.submit(make_job(user="ann"))
    second = queue.submit(make_job(user="bob"))
    queue.jobs.update(first.job_id, lambda j: j.model_copy(update={"status": JobStatus.running}))
    queue.mark_started(first.job_id)
    assert queue.jobs.get(first.job_id).queue_score == first.job.queue_score
    queue.requeue(first.job_id)
    assert [queue.position(s.job_id) for s in (first, second)] == [1, 2]


def test_the_eta_counts_batches_not_jobs(imagine_env: dict[str, str]) -> None:
    queue = fair_queue(imagine_env, max_batch=4)
    beat = Heartbeat(queue.redis, "generate@test", ["generate"], models=["default"])
    beat.beat()
    try:
        assert queue.eta(9) == pytest.approx(DEFAULT_DURATION * 9)  # nothing seen yet
        # Two batches of 4 that took 8 s each, one job alone that took 2 s.
        for batch, seconds in ((4, 8.0), (4, 8.0), (1, 2.0)):
            for _ in range(batch):
                job = make_job().model_copy(update={
                    "status": JobStatus.done, "started_at": 100.0,
                    "finished_at": 100.0 + seconds, "batch_size": batch})
                queue.mark_finished(job)
        # 9 jobs in 3 batches: 3 jobs per batch, 6 s per batch.
        assert queue.average_duration() == pytest.approx((8 * 8.0 + 2.0) / 9)
        assert queue.eta(1) == pytest.approx(6.0)
        assert queue.eta(7) == pytest.approx(6.0 * (6 / 3 + 1))
        # Without batches the same jobs would have been estimated at 7.3 s each, 51 s for
        # position 7; in batches of 3 the worker gets there in 18 s.
        assert (queue.eta(7) or 0.0) < queue.average_duration() * 7 / 2
    finally:
        beat.stop()


def test_scores_are_exact_for_the_documented_ranges() -> None:
    top = 7 * TIER_UNIT + (2**30 - 1) * TAG_UNIT + TAG_UNIT - 1
    assert float(top) == top and top < 2**53
    assert tag_of(float(top)) == 2**30 - 1
