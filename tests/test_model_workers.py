"""Two real CPU generate workers serving different models (the tiny folder as `default`, the
same weights as a single file as `other`): worker A serves default only, worker B default
and other. Every job for `other` runs on B (the job records say who drew them); a worker
killed mid-job (its whole process group, as a lost host) has that job finished by the
other one, which serves the same model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus
from tasks.core.queue import JobQueue
from tasks.names import WORKERS_KEY
from tests.fixtures_redis import Process, wait_for
from tests.test_queue import make_job, make_queue, wait_status

# Long enough on a shared CPU to be killed mid-drawing.
SLOW: dict[str, object] = {"width": 512, "height": 512, "num_inference_steps": 16}


@pytest.fixture
def two_models(imagine_env: dict[str, str], tiny_single_file: Path,
               monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    extra = {"IMAGINE_MODELS": json.dumps({"other": str(tiny_single_file)}),
             "IMAGINE_MAX_JOBS_PER_USER": "20"}
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    imagine_env.update(extra)
    return imagine_env


def heartbeat_of(client: redis.Redis, process: Process) -> dict[str, object] | None:
    for raw in client.mget([WORKERS_KEY.format(k.decode().split(":", 2)[2])
                            for k in client.scan_iter(WORKERS_KEY.format("*"))] or ["-"]):
        if raw and json.loads(raw)["pid"] == process.pid:
            return json.loads(raw)  # type: ignore[no-any-return]
    return None


def loaded(client: redis.Redis, process: Process) -> list[str]:
    models = (heartbeat_of(client, process) or {}).get("loaded")
    return sorted(str(m) for m in models) if isinstance(models, list) else []


def start_workers(start_process: Callable[..., Process], client: redis.Redis,
                  serves: dict[str, str]) -> dict[str, Process]:
    """`imagine worker` per name with IMAGINE_WORKER_MODELS, started together, once each
    one's heartbeat says it is ready."""
    started = {name: start_process("worker", "--queues", "generate", "--loglevel", "info",
                                   env={"IMAGINE_WORKER_MODELS": models}, name=f"worker-{name}")
               for name, models in serves.items()}
    for name, process in started.items():
        try:
            wait_for(lambda p=process: heartbeat_of(client, p) or not p.alive(),  # type: ignore[misc]
                     90, message=f"worker {name} to start")
        except AssertionError:
            raise AssertionError(f"worker {name}:\n{process.log()[-3000:]}") from None
        assert process.alive(), process.log()[-3000:]
    return started


def drawn_by(job: Job, process: Process) -> bool:
    return (job.worker or "").startswith(f"generate-{process.pid}@")


def finished(queue: JobQueue, ids: list[str]) -> list[Job]:
    return [wait_status(queue, job_id, JobStatus.done, JobStatus.failed, timeout=90)
            for job_id in ids]


@contextmanager
def logs_on_failure(workers: dict[str, Process]) -> Iterator[None]:
    try:
        yield
    except AssertionError as exc:
        logs = "\n".join(f"--- worker {name}:\n{p.log()[-2500:]}" for name, p in workers.items())
        raise AssertionError(f"{exc}\n{logs}") from None


def test_jobs_go_to_the_worker_serving_their_model_and_survive_a_killed_worker(
        two_models: dict[str, str], settings: Settings,
        start_process: Callable[..., Process]) -> None:
    client = redis_client(settings)
    workers = start_workers(start_process, client, {"a": "default", "b": "default,other"})
    assert heartbeat_of(client, workers["a"])["models"] == ["default"]  # type: ignore[index]
    assert heartbeat_of(client, workers["b"])["models"] == ["default", "other"]  # type: ignore[index]
    # Each holds what it serves, loaded at start (the next beat after the warm-up says so).
    with logs_on_failure(workers):
        wait_for(lambda: loaded(client, workers["b"]) == ["default", "other"], 60,
                 message="worker b to report its loaded models")
        wait_for(lambda: loaded(client, workers["a"]) == ["default"], 60,
                 message="worker a to report its loaded model")
        routed_and_redelivered(make_queue(settings), workers)


def routed_and_redelivered(queue: JobQueue, workers: dict[str, Process]) -> None:
    ids = [queue.submit(make_job(user=f"u{n}", model="other" if n % 2 else "default",
                                 seed=n)).job_id for n in range(6)]
    jobs = finished(queue, ids)
    assert [job.status for job in jobs] == [JobStatus.done] * 6, [j.error for j in jobs]
    others = [job for job in jobs if job.request.model == "other"]
    assert len(others) == 3 and all(drawn_by(job, workers["b"]) for job in others), \
        [job.worker for job in others]

    # Both workers draw a slow default job; B's host is lost mid-job; A, which serves the
    # default model too, finishes B's job once the broker hands its message out again.
    # Different step counts: two batches of one, not one batch of two (tasks.worker.batch_runner).
    slow = [queue.submit(make_job(user=f"slow{n}", seed=100 + n,
                                  **{**SLOW, "num_inference_steps": 16 + n})).job_id
            for n in range(2)]

    def both_running() -> list[Job] | None:
        current = [queue.jobs.get(job_id) for job_id in slow]
        running = [job for job in current if job.status is JobStatus.running]
        return current if len(running) == 2 else None

    current = wait_for(both_running, 60, message="both slow jobs to be drawn at once")
    on_b = next(job for job in current if drawn_by(job, workers["b"]))
    workers["b"].kill_group()

    done = {job.id: job for job in finished(queue, slow)}
    assert all(job.status is JobStatus.done for job in done.values())
    assert drawn_by(done[on_b.id], workers["a"]), done[on_b.id].worker
    assert done[on_b.id].attempts == 2
