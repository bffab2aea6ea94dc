"""`imagine up`: Redis, generate workers (one per GPU), a deliver worker, the web server and
the bots.

Each part runs as a child process started with the caller's command prefix (the CLI passes
its own entry point), followed by the part's sub-command: `worker --queues generate`, `web`…
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from settings import Settings
from tasks.core.connection import embedded_redis_dir
from tasks.core.retention import GC_INTERVAL
from tasks.local.embedded_redis import EmbeddedRedis
from tasks.local.gpus import generate_workers, visible_gpus
from tasks.local.supervisor import Service, Supervisor
from tasks.names import DELIVER_QUEUE, GENERATE_QUEUE

log = logging.getLogger("imagine.up")


def services(settings: Settings, redis_url: str, loglevel: str,
             command: Sequence[str], count_gpus: Callable[[], int] = visible_gpus
             ) -> list[Service]:
    def argv(*args: str) -> list[str]:
        return [*command, *args]

    env = {"IMAGINE_REDIS_URL": redis_url}
    # SIGTERM → Celery's cold shutdown with a soft phase: a running job gets a few seconds,
    # then goes back to the queue at once instead of after the visibility timeout.
    worker_env = {**env, "REMAP_SIGTERM": "SIGQUIT"}
    parts = [
        *(Service(plan.name, argv("worker", "--queues", GENERATE_QUEUE, *plan.args,
                                  "--loglevel", loglevel), worker_env)
          for plan in generate_workers(settings.device, count_gpus)),
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


def run_up(settings: Settings, *, command: Sequence[str], loglevel: str = "info") -> int:
    """Run every part until Ctrl-C; `command` starts this program (e.g. `python -m <the CLI>`)."""
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedRedis(embedded_redis_dir(settings)).start()
        url = embedded.url
        log.info("embedded Redis at %s (data in %s)", url, embedded.directory)
    parts = services(settings, url, loglevel, command)
    log.info("starting: %s; web on http://%s:%s", ", ".join(p.name for p in parts),
             settings.web_host, settings.web_port)
    try:
        return Supervisor(parts).run()
    finally:
        if embedded is not None:
            embedded.stop()
            log.info("embedded Redis stopped; its data stays in %s", embedded.directory)
