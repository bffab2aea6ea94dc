"""A whole Slack stack for end-to-end tests, and what they read back from the fake Slack.

The front end is `imagine web` (HTTP mode, signed requests) or `imagine slack` (Socket Mode,
connected to the fake's WebSocket); a generate and a deliver worker draw and deliver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import requests

from tasks.local.embedded_redis import free_port
from tests.chat_stack import ChatStack
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, FakeSlack, buttons
from tests.fixtures_redis import Process, wait_for

JOB_WAIT = 120.0


class SlackStack(ChatStack):
    """`imagine web` (HTTP mode) or `imagine slack` (Socket Mode) plus the workers, all
    pointed at the fake Slack."""

    def __init__(self, start_process: Callable[..., Process], start_worker: Callable[..., Process],
                 slack: FakeSlack, mode: Literal["http", "socket"] = "http",
                 **env: str) -> None:
        self.slack = slack
        self.mode = mode
        self.port = free_port()
        super().__init__(start_process, start_worker, {
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack.api_url,
            **({"SLACK_SIGNING_SECRET": SIGNING_SECRET, "IMAGINE_WEB_PORT": str(self.port)}
               if mode == "http" else {"SLACK_APP_TOKEN": APP_TOKEN}), **env})
        self.front: Process | None = None

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> str:
        return "web" if self.mode == "http" else "slack"

    def start(self) -> None:
        """The front end and the workers, once the front end is ready for Slack."""
        hellos = self._hellos()
        self.front = self.run(self.command, self.command)
        self.start_workers()  # before waiting: /healthz is ok once a generate worker beats
        self._wait_ready(self.front, hellos)

    def restart_front(self, name: str) -> Process:
        """A new front-end process (the old one stopped or killed), once it is ready."""
        hellos = self._hellos()
        self.front = self.run(name, self.command)
        self._wait_ready(self.front, hellos)
        return self.front

    def _hellos(self) -> int:
        return self.slack.socket.hellos if self.slack.socket is not None else 0

    def _wait_ready(self, front: Process, hellos: int) -> None:
        if self.mode == "socket":
            assert self.slack.socket is not None
            try:
                self.slack.socket.wait_connected(hellos + 1)
            except TimeoutError:
                raise AssertionError(front.log()[-3000:]) from None
            return

        def web_up() -> bool:
            assert front.alive(), self.logs()
            return healthz_ok(self.port)

        wait_for(web_up, 60, message="imagine web")


def healthz_ok(port: int) -> bool:
    """True once the web app on `port` answers /healthz with 200."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    except requests.ConnectionError:
        return False


def finished(slack: FakeSlack, channel: str, ts: str, stack: SlackStack) -> dict[str, Any]:
    """The status message once the deliverer turned it into the result."""

    def done() -> dict[str, Any] | None:
        message = slack.message(channel, ts)
        over = any("Reroll" in label for label in buttons(message)) or "failed" in message["text"]
        return message if over else None

    try:
        message = wait_for(done, JOB_WAIT, interval=0.2, message=f"the result of {ts}")
    except AssertionError:
        raise AssertionError(f"{slack.message(channel, ts)}\n{stack.logs()}") from None
    assert " — done" in message["text"], message["text"]
    return message


def uploads_in(slack: FakeSlack, channel: str, thread: str) -> list[dict[str, Any]]:
    return [m for m in slack.thread(channel, thread) if m.get("subtype") == "file_share"]


def new_status(slack: FakeSlack, before: int) -> dict[str, Any]:
    """The status message posted after the first `before` chat.postMessage calls."""
    posts = wait_for(lambda: len(slack.of("chat.postMessage")) > before and
                     slack.of("chat.postMessage"), message="a new status message")
    return dict(posts[before].answer["message"])


def edits_of(slack: FakeSlack, channel: str, ts: str) -> list[str]:
    """The texts a status message was edited to, in order."""
    return [str(call.params.get("text", "")) for call in slack.of("chat.update")
            if (call.params.get("channel"), call.params.get("ts")) == (channel, ts)]
