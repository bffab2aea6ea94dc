"""What every end-to-end bench starts with: the tiny model, its own Redis, the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from settings import Settings
from tasks.local.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BenchStack:
    work: Path
    model_dir: Path
    server: EmbeddedRedis
    env: dict[str, str]  # for the processes the bench starts

    def settings(self) -> Settings:
        """Settings of this process, matching its children's."""
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("IMAGINE_", "HF_"))})
        return Settings(_env_file=None)


def start_stack(prefix: str, threads: str, **extra: str) -> BenchStack:
    from generator.tiny_model import build_tiny_model  # noqa: PLC0415 - torch only when run

    work = Path(tempfile.mkdtemp(prefix=f"imagine-bench-{prefix}-"))
    model_dir = build_tiny_model(work / "tiny")
    server = EmbeddedRedis(work / "redis", port=free_port(), appendonly=False).start()
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith(("IMAGINE_", "DISCORD_", "SLACK_"))},
           "IMAGINE_REDIS_URL": server.url, "IMAGINE_MODEL": str(model_dir),
           "IMAGINE_DATA_DIR": str(work / "data"), "IMAGINE_DEVICE": "cpu",
           "IMAGINE_TORCH_THREADS": threads, "HF_HUB_OFFLINE": "1", **extra}
    return BenchStack(work, model_dir, server, env)


class BareGenerator:
    """bench.bare running with the stack's environment: the generator alone, timed."""

    @classmethod
    def warmed(cls, env: dict[str, str], prompt: str) -> BareGenerator:
        """Started, with `prompt` drawn once untimed (model loaded, caches warm)."""
        bare = cls(env)
        bare.seconds(prompt)
        return bare

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "bench.bare"],
                                        env=env, cwd=ROOT, text=True, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        if self._line() != "ready":
            raise SystemExit("bench.bare did not start")

    def seconds(self, prompt: str) -> float:
        """Draw `prompt` (with its flags) once; the seconds the generator took."""
        assert self.process.stdin is not None
        self.process.stdin.write(prompt + "\n")
        self.process.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"bench.bare exited with {self.process.wait()}")
        return line.strip()


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the bench's processes, then wait for each."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)
