"""Every check, in the order an operator fixes things: the machine, its services, the chat
platforms, the web server's exposure."""

from __future__ import annotations

import logging

from bots.doctor import chat, services, system, web
from bots.doctor.report import Check, fail
from settings import Settings

log = logging.getLogger(__name__)


def run_checks(settings: Settings, min_free_gb: float) -> list[Check]:
    groups = [
        lambda: [system.check_python(), system.check_torch(), system.check_gpu(settings)],
        lambda: system.check_models(settings),
        lambda: [services.check_redis(settings),
                 services.check_data_dir(settings, min_free_gb),
                 services.check_storage(settings, min_free_gb)],
        lambda: chat.check_slack(settings),
        lambda: chat.check_discord(settings),
        lambda: [web.check_public_url(settings), web.check_secrets(settings)],
    ]
    checks: list[Check] = []
    for index, group in enumerate(groups):
        try:
            checks.extend(group())
        except Exception as exc:  # a bug or surprise in one group must not hide the rest
            log.debug("doctor group %d failed", index, exc_info=True)
            checks.append(fail(f"checks #{index + 1}", f"the check itself crashed: {exc!r}",
                               "report this with the output of `imagine doctor --json`"))
    return checks
