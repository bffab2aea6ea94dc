"""A whole Discord stack for end-to-end tests: `imagine discord` connected to the fake
Discord (REST + gateway), plus a generate and a deliver worker."""

from __future__ import annotations

from collections.abc import Callable

from tests.chat_stack import ChatStack
from tests.fakes.discord_server import FakeDiscord
from tests.fixtures_redis import Process, wait_for

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
