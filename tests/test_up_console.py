"""A calm `imagine up`: the console shows a ready block and one line per job event; the parts'
full logs go to DATA/logs/<part>.log, and `--verbose` streams them too."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tasks.core.jobs import JobStatus
from tasks.local.console import Console, worth_showing
from tasks.local.embedded_redis import free_port
from tasks.local.job_feed import job_line
from tasks.local.part_output import log_name
from tests.fixtures_redis import Process, wait_for
from tests.test_queue import make_job

BANNER_MARKS = (" -------------- celery@", "-------------- generate-", "-------------- deliver-",
                "[config]", "[queues]", "[tasks]", ".> transport:")
LIBRARY_NOISE = ("Warning:", "SecurityWarning", "superuser privileges", "celery.redirected",
                 "Loading pipeline components", "it/s]", "Traceback")


def submit(port: int, prompt: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/jobs", data=json.dumps({"prompt": prompt}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.loads(answer.read())["id"])


def start_up(start_process: Callable[..., Process], data_dir: Path, *args: str
             ) -> tuple[Process, int]:
    port = free_port()
    up = start_process("up", *args, env={"IMAGINE_WEB_PORT": str(port),
                                         "IMAGINE_DATA_DIR": str(data_dir)}, name="up")
    wait_for(lambda: "imagine is ready" in up.log(), 90,
             message="the ready block", interval=0.2)
    return up, port


def stop(up: Process) -> str:
    up.signal(signal.SIGINT)
    assert up.popen is not None and up.popen.wait(60) == 0, up.log()[-3000:]
    return up.log()


def test_up_console_is_calm_and_logs_go_to_files(
        tmp_path: Path, start_process: Callable[..., Process]) -> None:
    data_dir = tmp_path / "up-data"
    up, port = start_up(start_process, data_dir)

    ids = [submit(port, "a red fox in the snow"),
           submit(port, "a lighthouse at dusk, oil painting, long prompt that goes on")]
    wait_for(lambda: all(f"job {i[:8]} " in up.log() and " done in " in up.log() for i in ids)
             and up.log().count(" done in ") >= 2, 60, message="two job lines", interval=0.2)
    console = stop(up)

    ready = console[console.index("imagine is ready"):]
    for expected in ("generate worker", "queue generate", "deliver worker", "queue deliver",
                     f"http://127.0.0.1:{port}/", "slack", "not configured",
                     f"logs: {data_dir / 'logs'}", "Ctrl-C"):
        assert expected in ready, (expected, console)
    done = [line for line in console.splitlines() if " done in " in line]
    assert len(done) == 2, console
    assert any('api:127.0.0.1 "a red fox in the snow" done in' in line for line in done)
    assert any('"a lighthouse at dusk, oil painting, l..."' in line for line in done)
    for noise in (*BANNER_MARKS, *LIBRARY_NOISE):
        assert noise not in console, (noise, console)
    assert console.rstrip().endswith("stopped")
    # Calm: a handful of lines, not a screenful per part.
    assert len(console.splitlines()) <= 20, console

    logs = data_dir / "logs"
    for part in ("generate worker", "deliver worker", "web"):
        assert (logs / log_name(part)).stat().st_size > 0, part
    generate_log = (logs / "generate-worker.log").read_text()
    assert "[queues]" in generate_log  # the full log keeps what the console leaves out
    assert "Loading pipeline components" not in generate_log  # no progress bars, even there
    assert "embedded" not in (logs / "up.log").read_text()  # the test's own Redis, not one of up's


def test_up_verbose_streams_the_parts_logs(
        tmp_path: Path, start_process: Callable[..., Process]) -> None:
    up, _ = start_up(start_process, tmp_path / "up-data", "--verbose")
    wait_for(lambda: "[generate worker]" in up.log() and "[web]" in up.log(), 30,
             message="the parts' lines", interval=0.2)
    console = stop(up)
    assert "[deliver worker]" in console
    assert any(line.startswith("[web] ") and "serving on" in line
               for line in console.splitlines()), console
    assert "started generate worker (pid" in console  # up's own info records too


def test_only_warnings_worth_acting_on_reach_the_console() -> None:
    stamp = "2026-11-28 15:02:32,756"
    assert worth_showing(f"{stamp} WARNING imagine.up: web exited with 1") == (
        "WARNING", "web exited with 1")
    assert worth_showing(f"{stamp} ERROR celery.worker.consumer.consumer: Cannot connect") == (
        "ERROR", "Cannot connect")
    for noise in (f"{stamp} INFO celery.apps.worker: generate-1@vm ready.",
                  f"{stamp} WARNING celery.redirected: Loading weights: 100%",
                  f"{stamp} WARNING py.warnings: FutureWarning: deprecated",
                  f"{stamp} WARNING diffusers.pipelines: library advice",
                  " -------------- celery@vm v5.7.0 (collider)",
                  "/x/celery/platforms.py:893: SecurityWarning: You're running the worker…",
                  "Traceback (most recent call last):"):
        assert worth_showing(noise) is None, noise


class Lines:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_part_lines_on_the_console() -> None:
    out = Lines()
    console = Console(out)  # type: ignore[arg-type]
    console.part_line("web", "2026-11-28 15:02:32,756 WARNING bots.web.app: slow", verbose=False)
    console.part_line("web", "2026-11-28 15:02:32,756 INFO bots.web.app: fine", verbose=False)
    console.part_line("web", "anything at all", verbose=True)
    lines = out.text.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("warning in web: slow")
    assert lines[1] == "[web] anything at all"


def test_job_lines_say_who_where_what_and_how_long() -> None:
    job = make_job(user="U1", platform="slack", prompt="a red fox").model_copy(
        update={"started_at": 100.0, "finished_at": 102.25, "images": ["a.png", "b.png"],
                "worker": "generate-1@vm"})
    job.requester.channel = "C9"
    assert job_line(job.model_copy(update={"status": JobStatus.running})) == (
        f'job {job.id[:8]} slack:U1 in C9 "a red fox" started on generate-1@vm')
    assert job_line(job.model_copy(update={"status": JobStatus.done})) == (
        f'job {job.id[:8]} slack:U1 in C9 "a red fox" done in 2.2 s (2 images)')
    failed = job.model_copy(update={"status": JobStatus.failed, "error": "Out of memory."})
    assert str(job_line(failed)).endswith("failed: Out of memory.")
    assert job_line(job.model_copy(update={"status": JobStatus.queued})) is None
    assert str(job_line(job.model_copy(update={"status": JobStatus.queued, "attempts": 1}))
               ).endswith("back in line (its worker stopped)")
