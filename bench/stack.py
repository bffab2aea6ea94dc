"""What every end-to-end bench starts with: the tiny model, its own Redis, the environment."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from settings import Settings
from tasks.embedded_redis import EmbeddedRedis, free_port


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
