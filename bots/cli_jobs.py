"""`imagine jobs` (what waits and what is drawn, for an operator at the console) and
`imagine jobs cancel ID` (any job: the operator holds the keys to Redis anyway).

Read from the structures the queue keeps for this (QUEUE_KEY in fair order, RUNNING_KEY),
never by scanning the keyspace.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import click

from settings import load_settings
from settings.errors import ImagineError

if TYPE_CHECKING:
    from tasks.core.jobs import Job
    from tasks.core.queue import JobQueue

PROMPT_SHOWN = 40  # characters of the prompt in the table


@dataclass(frozen=True)
class JobLine:
    id: str
    status: str
    who: str
    where: str
    position: int | None
    age_seconds: float
    model: str
    prompt: str
    worker: str | None
    step: int
    total_steps: int


def _queue() -> JobQueue:
    from tasks.core.connection import redis_client  # noqa: PLC0415
    from tasks.core.queue import JobQueue  # noqa: PLC0415
    from tasks.worker.celery_app import create_celery  # noqa: PLC0415

    try:
        settings = load_settings()
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    return JobQueue(settings, redis_client(settings), create_celery(settings))


def job_lines(queue: JobQueue, now: float | None = None) -> list[JobLine]:
    """Running jobs first (oldest first), then the waiting ones in the order they will run."""
    from tasks.names import QUEUE_KEY  # noqa: PLC0415

    now = time.time() if now is None else now
    waiting = [raw.decode() if isinstance(raw, bytes) else str(raw)
               for raw in queue.redis.zrange(QUEUE_KEY, 0, -1)]
    running = [job for job in map(queue.jobs.find, queue.running_ids()) if job is not None]
    lines = [_line(job, None, now) for job in sorted(running, key=lambda j: j.created_at)]
    for job_id in waiting:
        job = queue.jobs.find(job_id)
        if job is not None and not job.status.finished:
            lines.append(_line(job, queue.position(job_id), now))
    return lines


def _line(job: Job, position: int | None, now: float) -> JobLine:
    requester = job.requester
    where = "/".join(part for part in (requester.platform, requester.channel) if part)
    return JobLine(job.id, job.status.value, requester.user or "anonymous", where, position,
                   max(0.0, now - job.created_at), job.request.model, job.request.prompt,
                   job.worker, job.step, job.total_steps)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _table(lines: list[JobLine]) -> str:
    rows = [("ID", "STATUS", "POS", "AGE", "WHO", "WHERE", "MODEL", "PROMPT")]
    for line in lines:
        status = line.status
        if line.status == "running" and line.total_steps:
            status += f" {line.step}/{line.total_steps}"
        prompt = line.prompt if len(line.prompt) <= PROMPT_SHOWN else (
            line.prompt[:PROMPT_SHOWN - 1] + "…")
        rows.append((line.id, status, "-" if line.position is None else str(line.position),
                     _age(line.age_seconds), line.who, line.where, line.model, prompt))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    # The last column (the prompt) is not padded: no trailing spaces.
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths,
                                                                    strict=True)), row[-1]])
                     for row in rows)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"jobs": [...]} instead.')
@click.pass_context
def jobs(ctx: click.Context, as_json: bool) -> None:
    """List queued and running jobs (who, where, position, age); `jobs cancel ID` cancels."""
    if ctx.invoked_subcommand is not None:
        return
    lines = job_lines(_queue())
    if as_json:
        click.echo(json.dumps({"jobs": [asdict(line) for line in lines]}, indent=2))
    elif not lines:
        click.echo("no jobs waiting or running")
    else:
        click.echo(_table(lines))


@jobs.command("cancel")
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel job JOB_ID, whoever it belongs to: a queued job never runs, a running one stops
    at its next step."""
    from tasks.core.jobs import JobStatus  # noqa: PLC0415
    from tasks.errors import JobNotFound  # noqa: PLC0415

    queue = _queue()
    try:
        job = queue.jobs.get(job_id)
        if job.status.finished:
            raise click.ClickException(f"Job {job_id} already finished ({job.status.value}); "
                                       "nothing to cancel.")
        job = queue.cancel(job_id)
    except JobNotFound as exc:
        raise click.ClickException(f"{exc.message} `imagine jobs` lists the jobs waiting "
                                   "or running.") from None
    if job.status is JobStatus.cancelled:
        click.echo(f"cancelled {job_id} before it started ({job.requester.user_key}); its "
                   "message says so once a worker reaches it")
    else:
        click.echo(f"cancelling {job_id}: {job.worker or 'its worker'} stops it at the next "
                   "step")
