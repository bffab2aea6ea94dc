"""`imagine gc` (image retention by hand or on a timer) and `imagine beat` (its schedule in
deployments)."""

from __future__ import annotations

import logging
import time

import click

from settings import load_settings
from settings.errors import ImagineError


@click.command()
@click.option("--dry-run", is_flag=True, help="List the images it would delete; delete nothing.")
@click.option("--every", type=click.FloatRange(min=1.0), default=None, metavar="SECONDS",
              help="Collect again every SECONDS until stopped (how `imagine up` runs it).")
def gc(dry_run: bool, every: float | None) -> None:
    """Delete images not served for IMAGINE_IMAGE_RETENTION days that no live job needs,
    with their prompt-URL cache entries (those URLs are drawn again on demand)."""
    from tasks.core.connection import redis_client  # noqa: PLC0415
    from tasks.core.retention import GcBusy, collect_locked  # noqa: PLC0415
    from tasks.core.storage import open_storage  # noqa: PLC0415

    try:
        settings = load_settings()
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    if settings.image_retention is None:
        click.echo("IMAGINE_IMAGE_RETENTION is not set: images are kept for ever; nothing to "
                   "collect. Set it to a number of days to delete images not served that long.")
        return
    client, store = redis_client(settings), open_storage(settings)
    while True:
        try:
            report = collect_locked(client, store, settings.image_retention, dry_run=dry_run)
        except GcBusy as exc:
            click.echo(exc.message, err=True)
        except ImagineError as exc:
            if every is None:
                raise click.ClickException(exc.message) from None
            logging.getLogger("imagine.gc").warning("gc failed: %s", exc.message)
        except Exception:  # on a timer, a Redis or storage outage waits for the next round
            if every is None:
                raise
            logging.getLogger("imagine.gc").exception("gc failed")
        else:
            for name in report.expired if dry_run else ():
                click.echo(name)
            click.echo(report.summary())
        if every is None:
            return
        time.sleep(every)


@click.command()
@click.option("--loglevel", default="info", show_default=True)
def beat(loglevel: str) -> None:
    """Celery beat: sends `imagine.gc` to the deliver workers every hour (run exactly one)."""
    from tasks.worker.gc_task import run_beat  # noqa: PLC0415

    logging.basicConfig(level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_beat(load_settings(), loglevel)
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None


OPS_COMMANDS = (gc, beat)
