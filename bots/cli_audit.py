"""`imagine audit export --since 7d`: the audit trail as JSON Lines on stdout, oldest first."""

from __future__ import annotations

import click

from bots.errors import PromptError
from settings import load_settings
from settings.errors import ImagineError


@click.group()
def audit() -> None:
    """The audit trail: every job and every policy decision (IMAGINE_AUDIT_DAYS)."""


@audit.command("export")
@click.option("--since", "since_text", default="7d", show_default=True,
              help="30m, 12h, 7d, or an ISO date / date and time (UTC unless it names a zone).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many entries (the oldest first).")
def export(since_text: str, limit: int | None) -> None:
    """Write the entries since --since as JSON Lines to stdout, oldest first."""
    from bots.audit_query import entries_since, json_line, parse_since  # noqa: PLC0415
    from tasks.core.connection import redis_client  # noqa: PLC0415
    from tasks.policy.audit import AuditLog  # noqa: PLC0415

    try:
        since = parse_since(since_text)
    except PromptError as exc:
        raise click.BadParameter(exc.message, param_hint="--since") from None
    try:
        settings = load_settings()
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    log = AuditLog(settings, redis_client(settings))
    for entry in entries_since(log, since, limit):
        click.echo(json_line(entry))
