"""`imagine recall FILE`: the prompt inside a PNG, as text to paste into /imagine, or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from settings import load_settings
from settings.errors import ImagineError


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print {prompt, parameters, notes} as JSON, like POST /api/v1/recall.")
def recall(file: Path, as_json: bool) -> None:
    """Print the prompt recorded in FILE (a PNG from imagine, A1111, Forge, …); notes on
    stderr say what was changed to fit this server's limits."""
    from bots.followups import FollowUpLimits  # noqa: PLC0415
    from bots.limits import Limits  # noqa: PLC0415
    from bots.recall import recall_png  # noqa: PLC0415

    try:
        settings = load_settings()
        recalled = recall_png(file.read_bytes(), Limits.from_settings(settings),
                              FollowUpLimits.from_settings(settings))
    except ImagineError as exc:
        raise click.ClickException(f"{file}: {exc.message}") from None
    if as_json:
        click.echo(json.dumps({"prompt": recalled.text, "parameters": recalled.parameters,
                               "notes": list(recalled.notes)}, ensure_ascii=False, indent=2))
        return
    click.echo(recalled.text)
    for note in recalled.notes:
        click.echo(f"note: {note}", err=True)
