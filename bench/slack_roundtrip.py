"""Slack overhead: a signed /imagine to the completed upload, against the bare generator.

Runs its own Redis (the embedded server), `imagine web` with Slack's HTTP mode, a real
generate worker and a real deliver worker, the tiny model, and the local fake of Slack's Web
API from tests/fakes, all on this machine. The clock starts when the slash command is sent
and stops when files.completeUploadExternal has put the images into the status message's
thread. Prints figures, then one line of `name=value` pairs ending with the overhead ratio.
With `--mode socket` the front end is `imagine slack` in Socket Mode instead, fed over the
fake's WebSocket, and the ack is the app's acknowledgement of the envelope.

    python -m bench.slack_roundtrip [--size 256] [--steps 20] [--rounds 7] [--mode http|socket]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench.stack import BareGenerator, start_stack, stop_processes
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStore
from tasks.local.embedded_redis import free_port
from tests.fakes.slack_api import (
    APP_TOKEN,
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    SlackSender,
    SocketSender,
    fake_slack,
)

ROOT = Path(__file__).resolve().parent.parent

THREADS = "2"
TIMEOUT = 300.0


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "bots.cli", *args], env=env, cwd=ROOT,
                            stdout=handle, stderr=subprocess.STDOUT)


def completed(slack: FakeSlack) -> int:
    return len(slack.of("files.completeUploadExternal"))


def last_job(slack: FakeSlack) -> Job:
    """The job behind the latest status message (its Cancel button carries the id)."""
    blocks = slack.of("chat.postMessage")[-1].params["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    job_id = blocks[1]["elements"][0]["value"]
    return JobStore(redis_client(Settings(_env_file=None)), 60).get(job_id)


def wait_job(slack: FakeSlack) -> Job:
    job = last_job(slack)
    deadline = time.monotonic() + 30
    while job.generation_seconds is None and time.monotonic() < deadline:
        time.sleep(0.05)
        job = last_job(slack)
    return job


def trace_job(slack: FakeSlack, begin: float) -> None:
    """Where the time went, from the job record (BENCH_TRACE=1)."""
    job = last_job(slack)
    offset = time.time() - time.perf_counter()  # wall clock of perf_counter's zero
    for name, stamp in (("created", job.created_at), ("started", job.started_at),
                        ("finished", job.finished_at)):
        if stamp is not None:
            print(f"  {(stamp - offset - begin) * 1000:8.1f} ms job {name}", file=sys.stderr)


def one_command(sender: SlackSender | SocketSender, slack: FakeSlack,
                text: str) -> tuple[float, float]:
    """(seconds to the ack, seconds to the completed upload) of one slash command."""
    before = completed(slack)
    begin = time.perf_counter()
    if isinstance(sender, SocketSender):
        ack = sender.command(text)
        acked = ack.at - begin
        if ack.payload:
            raise SystemExit(f"unexpected ack: {ack.payload}")
    else:
        answer = sender.command(text)
        acked = time.perf_counter() - begin
        if answer.status_code != 200 or answer.text:
            raise SystemExit(f"unexpected ack {answer.status_code}: {answer.text[:300]}")
    slack.wait(lambda: completed(slack) > before, TIMEOUT)
    total = time.perf_counter() - begin
    if os.environ.get("BENCH_TRACE"):
        trace_job(slack, begin)
        for call in slack.calls:
            if call.at >= begin:
                print(f"  {(call.at - begin) * 1000:8.1f} ms {call.method} {call.status}",
                      file=sys.stderr)
    return acked, total


def wait_ready(mode: str, port: int, slack: FakeSlack, processes: list[subprocess.Popen[bytes]],
               work: Path) -> SlackSender | SocketSender:
    """The sender for `mode`, once the front end answers (HTTP) or has connected (socket)."""
    deadline = time.monotonic() + 120
    while True:
        if mode == "socket":
            assert slack.socket is not None
            if slack.socket.hellos:
                return SocketSender(slack)
        else:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                    return SlackSender(f"http://127.0.0.1:{port}", slack)
            except requests.ConnectionError:
                pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise SystemExit(f"the stack did not start; logs in {work}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mode", choices=("http", "socket"), default="http")
    args = parser.parse_args()

    port = free_port()
    front = {"http": {"IMAGINE_WEB_PORT": str(port), "SLACK_SIGNING_SECRET": SIGNING_SECRET},
             "socket": {"SLACK_APP_TOKEN": APP_TOKEN}}[args.mode]
    stack = start_stack("slack", THREADS, SLACK_BOT_TOKEN=BOT_TOKEN, **front)
    work, server, env = stack.work, stack.server, stack.env
    stack.settings()  # this process reads job records from the stack's Redis (last_job)
    text = f"a red fox in snow --size {args.size}x{args.size} --steps {args.steps}"

    # The bare generator in a process of its own (as the generate worker draws), same
    # threads, same request, interleaved with the Slack rounds so both see the same load.
    bare_generator = BareGenerator.warmed(env, f"{text} --seed 1")

    def bare_once(seed: int) -> float:
        return bare_generator.seconds(f"{text} --seed {seed}")

    # The same request through Slack: the front end, generate and deliver workers.
    bare: list[float] = []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with fake_slack(socket_mode=args.mode == "socket") as slack:
            env["SLACK_API_URL"] = slack.api_url
            command = "web" if args.mode == "http" else "slack"
            processes = [
                start([command, "--loglevel", "warning"], env, work / f"{command}.log"),
                start(["worker", "--queues", "generate", "--loglevel", "warning"], env,
                      work / "generate.log"),
                start(["worker", "--queues", "deliver", "--loglevel", "warning"], env,
                      work / "deliver.log"),
            ]
            sender = wait_ready(args.mode, port, slack, processes, work)
            one_command(sender, slack, f"{text} --seed 1")  # warm every path once
            acks, latency, in_worker = [], [], []
            for i in range(args.rounds):
                bare.append(bare_once(100 + i))
                acked, total = one_command(sender, slack, f"{text} --seed {100 + i}")
                acks.append(acked)
                latency.append(total)
                job = wait_job(slack)
                in_worker.append(job.generation_seconds or float("nan"))
                time.sleep(0.5)  # let the last edits settle, as between real users' commands
    finally:
        bare_generator.close()
        stop_processes(processes)
        server.stop()

    bare_s, latency_s = statistics.median(bare), statistics.median(latency)
    ratio = latency_s / bare_s
    print(f"tiny model, {args.size}x{args.size}, {args.steps} steps, {THREADS} torch threads, "
          f"{args.mode} mode")
    print(f"bare generator:                    median {bare_s:.3f} s over {args.rounds} runs")
    print(f"/imagine -> ack:                   median {statistics.median(acks) * 1000:.1f} ms, "
          f"max {max(acks) * 1000:.1f} ms")
    print(f"/imagine -> upload completed:      median {latency_s:.3f} s over {args.rounds} runs")
    worker_s = statistics.median(in_worker)
    print(f"  of which in the worker's pipeline: median {worker_s:.3f} s "
          f"(latency / that = {latency_s / worker_s:.3f}: queue + Slack round trips alone)")
    print(f"overhead ratio:                    {ratio:.3f} (goal <= 1.15)")
    print(f"bare_s={bare_s:.3f} worker_s={worker_s:.3f} latency_s={latency_s:.3f} "
          f"ack_ms={statistics.median(acks) * 1000:.1f} paired_ratio={latency_s / worker_s:.3f} "
          f"overhead_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
