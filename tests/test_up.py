"""`imagine up`: embedded Redis, workers and web on one machine, supervised."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

from settings import Settings
from tasks.core.jobs import JobStatus
from tasks.local.embedded_redis import EmbeddedRedis, free_port
from tests.fixtures_redis import Process, wait_for
from tests.test_queue import make_job, make_queue, wait_status


def healthz(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def generate_worker_pid(queue_settings: Settings) -> int | None:
    workers = make_queue(queue_settings).alive_workers("generate")
    return int(workers[0]["pid"]) if workers else None  # type: ignore[call-overload]


def test_up_runs_everything_restarts_what_dies_and_keeps_its_queue(
        tmp_path: Path, settings: Settings, start_process: Callable[..., Process]) -> None:
    port = free_port()
    data_dir = tmp_path / "up-data"
    env = {"IMAGINE_REDIS_URL": "", "IMAGINE_DATA_DIR": str(data_dir),
           "IMAGINE_WEB_PORT": str(port)}
    embedded = EmbeddedRedis(data_dir / "redis")
    own = settings.model_copy(update={"redis_url": embedded.url, "data_dir": data_dir})

    up = start_process("up", env=env, name="up")
    wait_for(lambda: (h := healthz(port)) and h.get("ok"), 90,
             message=f"imagine up to be healthy:\n{up.log()[-3000:]}")

    queue = make_queue(own)
    first = queue.submit(make_job())
    assert wait_status(queue, first.job_id, JobStatus.done).images

    # A part dies: `imagine up` stays up and restarts it.
    old_pid = generate_worker_pid(own)
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: (pid := generate_worker_pid(own)) and pid != old_pid, 90,
             message="the generate worker to be restarted")
    assert up.alive()
    second = queue.submit(make_job(seed=2))
    assert wait_status(queue, second.job_id, JobStatus.done).images

    # Ctrl-C stops everything, Redis last.
    up.signal(signal.SIGINT)
    assert up.popen is not None and up.popen.wait(60) == 0, up.log()[-3000:]
    assert not embedded.answers()

    # Jobs queued while nothing runs are found by the next `imagine up`.
    embedded.start()
    waiting = [make_queue(own).submit(make_job(user=f"u{i}", seed=10 + i)).job_id
               for i in range(2)]
    embedded.stop()
    start_process("up", env=env, name="up-again")
    queue = make_queue(own)
    wait_for(embedded.answers, 30, message="embedded Redis to come back")
    for job_id in waiting:
        assert wait_status(queue, job_id, JobStatus.done, timeout=90).images
