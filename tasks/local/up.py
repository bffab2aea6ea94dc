"""`imagine up`: Redis, generate workers (one per GPU), a deliver worker, the web server and
the bots.

Each part runs as a child process started with the caller's command prefix (the CLI passes
its own entry point), followed by the part's sub-command: `worker --queues generate`, `web`…
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from settings import Settings
from tasks.core.connection import embedded_redis_dir
from tasks.core.jobs import JobStore
from tasks.core.retention import GC_INTERVAL
from tasks.local.console import Console, ConsoleHandler
from tasks.local.embedded_redis import EmbeddedRedis
from tasks.local.gpus import GenerateWorker, generate_workers, visible_gpus
from tasks.local.job_feed import JobFeed
from tasks.local.part_output import PartOutput
from tasks.local.ready import Layout, ReadyWatch
from tasks.local.supervisor import Service, Supervisor
from tasks.names import DELIVER_QUEUE, GENERATE_QUEUE

log = logging.getLogger("imagine.up")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the parts' format too
# Every part under `imagine up`: lines reach the log files as written, and no progress bars
# (model loading draws them on stderr, one log line per tick).
PART_ENV = {"PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
BOTS = ("slack", "discord")
DRAIN_SECONDS = 2.0


def services(settings: Settings, redis_url: str, loglevel: str,
             command: Sequence[str], count_gpus: Callable[[], int] = visible_gpus,
             plan: Sequence[GenerateWorker] | None = None) -> list[Service]:
    def argv(*args: str) -> list[str]:
        return [*command, *args]

    env = {"IMAGINE_REDIS_URL": redis_url}
    # SIGTERM → Celery's cold shutdown with a soft phase: a running job gets a few seconds,
    # then goes back to the queue at once instead of after the visibility timeout.
    worker_env = {**env, "REMAP_SIGTERM": "SIGQUIT"}
    parts = [
        *(Service(worker.name, argv("worker", "--queues", GENERATE_QUEUE, *worker.args,
                                    "--loglevel", loglevel), worker_env)
          for worker in (plan if plan is not None
                         else generate_workers(settings.device, count_gpus))),
        Service("deliver worker", argv("worker", "--queues", DELIVER_QUEUE,
                                       "--loglevel", loglevel), worker_env),
        Service("web", argv("web", "--loglevel", loglevel), env),
    ]
    if settings.image_retention is not None:
        # Image retention on a timer; deployments run `imagine beat` instead.
        parts.append(Service("gc", argv("gc", "--every", f"{GC_INTERVAL:g}"), env))
    if settings.slack_bot_token and settings.slack_app_token:
        parts.append(Service("slack", argv("slack", "--loglevel", loglevel), env))
    if settings.discord_token:
        parts.append(Service("discord", argv("discord", "--loglevel", loglevel), env))
    return parts


def logs_dir(settings: Settings) -> Path:
    return settings.data_dir / "logs"


def setup_logging(logs: Path, loglevel: str, console: Console, verbose: bool) -> None:
    """`imagine up`'s own records: all into logs/up.log; warnings (everything with
    --verbose) on the console."""
    logs.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(logs / "up.log")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.setLevel(loglevel.upper())
    root.handlers = [to_file, ConsoleHandler(console, logging.INFO if verbose else logging.WARNING)]


def run_up(settings: Settings, *, command: Sequence[str], loglevel: str = "info",
           verbose: bool = False, console: Console | None = None) -> int:
    """Run every part until Ctrl-C; `command` starts this program (e.g. `python -m <the CLI>`)."""
    console = console or Console()
    logs = logs_dir(settings)
    setup_logging(logs, loglevel, console, verbose)
    embedded: EmbeddedRedis | None = None
    url, where = settings.redis_url, "IMAGINE_REDIS_URL"
    if not url:
        embedded = EmbeddedRedis(embedded_redis_dir(settings)).start()
        url, where = embedded.url, f"embedded, data in {embedded.directory}"
        log.info("embedded Redis at %s (data in %s)", url, embedded.directory)
    plan = generate_workers(settings.device)
    parts = services(settings, url, loglevel, command, plan=plan)
    for part in parts:
        part.env.update(PART_ENV)
        part.output = PartOutput(part.name, logs, console, verbose)
    console.event(f"starting {', '.join(p.name for p in parts)} (logs in {logs})")
    layout = Layout(plan, where, str(logs), [p.name for p in parts if p.name in BOTS],
                    [p.name for p in parts if p.name == "gc"])
    client = redis.Redis.from_url(url)
    ready = ReadyWatch(settings, layout, console).start()
    feed = JobFeed(client, JobStore(client, settings.job_ttl), console).start()
    try:
        return Supervisor(parts).run()
    finally:
        ready.stop()
        feed.stop()
        for part in parts:
            if part.output is not None:
                part.output.drain(DRAIN_SECONDS)
        client.close()
        if embedded is not None:
            embedded.stop()
            log.info("embedded Redis stopped; its data stays in %s", embedded.directory)
        console.event("stopped")
