"""`imagine doctor`: what is wrong with this deployment, and how to fix it."""

from __future__ import annotations

import sys

import click

from settings import load_settings
from settings.errors import ImagineError


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help='Print {"checks": [{"name", "status", "detail", "fix"}]}.')
@click.option("--min-free", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              metavar="GB", help="Fail the storage checks below this much free space.")
def doctor(as_json: bool, min_free: float) -> None:
    """Check Python, torch, the GPU, the models, Redis, storage, Slack, Discord and the web
    server; each check says ok, warn, fail or skipped, with a fix. Exits 1 when one fails."""
    from bots.doctor.report import as_json as dump  # noqa: PLC0415
    from bots.doctor.report import as_text, exit_code  # noqa: PLC0415
    from bots.doctor.runner import run_checks  # noqa: PLC0415

    try:
        settings = load_settings()
    except ImagineError as exc:  # the configuration itself is the first thing to fix
        raise click.ClickException(exc.message) from None
    checks = run_checks(settings, min_free)
    click.echo(dump(checks) if as_json else as_text(checks))
    sys.exit(exit_code(checks))
