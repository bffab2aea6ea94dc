"""The harness of every chat end-to-end test: a front-end process (`imagine web`,
`imagine slack` or `imagine discord`) plus a generate and a deliver worker, all with one
environment pointed at a fake chat service.

Platform harnesses (`SlackStack` in tests/slack_support.py, `DiscordStack` in
tests/discord_support.py) add how their front end starts and when it is ready; starting,
restarting, stopping and the logs on failure live here once.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.fixtures_redis import Process

QUEUES = ("generate", "deliver")


class ChatStack:
    """Processes by name, started with `start_process`/`start_worker` (the fixtures of the
    same names, or their module-scoped twins from `process_starter`/`worker_starter`)."""

    def __init__(self, start_process: Callable[..., Process],
                 start_worker: Callable[..., Process], env: dict[str, str]) -> None:
        self.start_process = start_process
        self.start_worker_process = start_worker
        self.env = env
        self.processes: dict[str, Process] = {}

    def run(self, name: str, *args: str) -> Process:
        """`imagine ARGS` under `name` (a later start under the same name replaces it)."""
        process = self.start_process(*args, env=self.env, name=name)
        self.processes[name] = process
        return process

    def start_worker(self, queue: str) -> Process:
        """A worker for `queue`, once its heartbeat says it is ready."""
        process = self.start_worker_process(queue, env=self.env)
        self.processes[f"worker-{queue}"] = process
        return process

    def start_workers(self) -> None:
        for queue in QUEUES:
            self.start_worker(queue)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{process.log()[-3000:]}"
                         for name, process in self.processes.items())
