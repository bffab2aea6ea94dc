"""`imagine up`: Redis, a generate worker, a deliver worker, the web server and the bots."""

from __future__ import annotations

import logging
import sys

from settings import Settings
from tasks.core.connection import embedded_redis_dir
from tasks.local.embedded_redis import EmbeddedRedis
from tasks.local.supervisor import Service, Supervisor

log = logging.getLogger("imagine.up")


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bots.cli", *args]


def services(settings: Settings, redis_url: str, loglevel: str) -> list[Service]:
    env = {"IMAGINE_REDIS_URL": redis_url}
    # SIGTERM → Celery's cold shutdown with a soft phase: a running job gets a few seconds,
    # then goes back to the queue at once instead of after the visibility timeout.
    worker_env = {**env, "REMAP_SIGTERM": "SIGQUIT"}
    parts = [
        Service("generate worker", _command("worker", "--queues", "generate",
                                            "--loglevel", loglevel), worker_env),
        Service("deliver worker", _command("worker", "--queues", "deliver",
                                           "--loglevel", loglevel), worker_env),
        Service("web", _command("web", "--loglevel", loglevel), env),
    ]
    if settings.slack_bot_token and settings.slack_app_token:
        parts.append(Service("slack", _command("slack", "--loglevel", loglevel), env))
    if settings.discord_token:
        parts.append(Service("discord", _command("discord", "--loglevel", loglevel), env))
    return parts


def run_up(settings: Settings, *, loglevel: str = "info") -> int:
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedRedis(embedded_redis_dir(settings)).start()
        url = embedded.url
        log.info("embedded Redis at %s (data in %s)", url, embedded.directory)
    parts = services(settings, url, loglevel)
    log.info("starting: %s; web on http://%s:%s", ", ".join(p.name for p in parts),
             settings.web_host, settings.web_port)
    try:
        return Supervisor(parts).run()
    finally:
        if embedded is not None:
            embedded.stop()
            log.info("embedded Redis stopped; its data stays in %s", embedded.directory)
