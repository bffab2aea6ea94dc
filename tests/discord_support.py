"""A whole Discord stack for end-to-end tests: `imagine discord` connected to the fake
Discord (REST + gateway), plus a generate and a deliver worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.chat_stack import ChatStack
from tests.fakes.discord_server import FakeDiscord
from tests.fixtures_redis import Process, process_env, process_starter, wait_for, worker_starter

CONNECT_WAIT = 180.0


class DiscordStack(ChatStack):
    """`imagine discord` plus the workers, pointed at the fake Discord."""

    def __init__(self, fake: FakeDiscord, start_process: Callable[..., Process],
                 start_worker: Callable[..., Process], env: dict[str, str]) -> None:
        super().__init__(start_process, start_worker, {**fake.env, **env})
        self.fake = fake

    @property
    def bot(self) -> Process:
        """The bot process last started."""
        return self.processes["bot"]

    def start(self) -> None:
        """The workers, then the bot once it is connected to the fake gateway."""
        self.start_workers()
        self.start_bot()

    def start_bot(self) -> Process:
        """`imagine discord`, once it identified anew and the fake counts it connected."""
        sessions = len(self.fake.identifies)
        process = self.run("bot", "discord", "--loglevel", "info")
        wait_for(lambda: (len(self.fake.identifies) > sessions and self.fake.connected)
                 or not process.alive(), CONNECT_WAIT, message="the bot to connect")
        assert process.alive(), process.log()[-3000:]
        return process

    def restart_all(self) -> None:
        self.stop()
        wait_for(lambda: not self.fake.connected, CONNECT_WAIT, message="the bot to disconnect")
        self.start()


@contextmanager
def running_discord_stack(redis_server: Any, tmp: Path, model_dir: Path, fake: FakeDiscord,
                          workers: bool = True, **settings: str) -> Iterator[DiscordStack]:
    """A started DiscordStack whose processes see only `settings` of ours (plus the fake's
    and the test environment's), stopped with the fake when the block ends; without
    `workers` only the bot (for what it answers itself: listings, autocomplete)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("IMAGINE_", "SLACK_", "DISCORD_"))}
    env.update(process_env(redis_server.url, tmp, model_dir, **settings, **fake.env))
    logs = tmp / "logs"
    logs.mkdir()
    start_process, stop_all = process_starter(logs, env)
    stack = DiscordStack(fake, start_process, worker_starter(start_process, redis_server.client()),
                         env)
    try:
        if workers:
            stack.start()
        else:
            stack.start_bot()
        yield stack
    finally:
        stop_all()
        fake.stop()
