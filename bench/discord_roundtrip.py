"""Discord overhead: @mention → image posted, against the bare generator, same run.

Runs its own Redis (the embedded server), a fake Discord (REST + gateway, from tests/fakes),
real `imagine worker` processes (generate and deliver), a real `imagine discord` bot and
the tiny model, all on this machine. The latency is from the fake gateway sending the
MESSAGE_CREATE to the fake REST API having received the reply with the PNG attached.
Prints figures, then one line of `name=value` pairs ending with `overhead_ratio=…`.

    python -m bench.discord_roundtrip [--size 256] [--steps 20] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.stack import BareGenerator, start_stack, stop_processes
from generator.request import ImageRequest
from tasks.core.connection import redis_client
from tasks.names import WORKERS_KEY
from tests.fakes.discord_server import Call, FakeDiscord

ROOT = Path(__file__).resolve().parent.parent

# One torch thread: on a shared 2-core machine two threads spin against other work and
# a 1 s image can take 40 s, which measures the neighbours rather than the overhead.
THREADS = "1"
TIMEOUT = 300.0


def wait(condition, what: str, timeout: float = TIMEOUT):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {what}")


def worker_ready(client, queue: str) -> bool:  # type: ignore[no-untyped-def]
    import json

    for key in client.scan_iter(WORKERS_KEY.format("*")):
        raw = client.get(key)
        if raw and queue in json.loads(raw)["queues"]:
            return True
    return False


def posted_reply(fake: FakeDiscord, message_id: str) -> Call | None:
    for call in fake.posts_with_files():
        if str((call.json.get("message_reference") or {}).get("message_id")) == message_id:
            return call
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    fake = FakeDiscord().start()
    stack = start_stack("discord", THREADS, IMAGINE_DEFAULT_SIZE=str(args.size),
                        IMAGINE_DEFAULT_STEPS=str(args.steps), IMAGINE_MAX_JOBS_PER_USER="100",
                        **fake.env)
    work, server, env = stack.work, stack.server, stack.env
    settings = stack.settings()
    request = ImageRequest(prompt="a red fox in snow", width=args.size, height=args.size,
                           num_inference_steps=args.steps, seed=1)

    # The bare generator in a process of its own (as the worker draws), same threads, same
    # request; its rounds alternate with the Discord rounds so both see the same load.
    text = f"{request.prompt} --size {args.size}x{args.size} --steps {args.steps} --seed 1"
    bare_generator = BareGenerator.warmed(env, text)

    def bare_round() -> float:
        return bare_generator.seconds(text)

    def start(*command: str) -> subprocess.Popen[bytes]:
        log = (work / f"{'-'.join(command[:3])}.log").open("ab")
        return subprocess.Popen([sys.executable, "-m", "bots.cli", *command], env=env,
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    processes = [start("worker", "--queues", "generate", "--loglevel", "warning"),
                 start("worker", "--queues", "deliver", "--loglevel", "warning")]
    try:
        client = redis_client(settings)
        wait(lambda: worker_ready(client, "generate") and worker_ready(client, "deliver"),
             "the workers")
        processes.append(start("discord", "--loglevel", "warning"))
        wait(lambda: fake.connected, "the bot to connect")

        def mention(seed: int) -> float:
            payload = fake.message_payload(f"a red fox in snow --seed {seed}")
            sent = time.monotonic()
            fake.dispatch("MESSAGE_CREATE", payload)
            call = wait(lambda: posted_reply(fake, payload["id"]), "the posted image")
            return call.at - sent

        mention(99)  # warm-up: first job of the worker processes
        bare: list[float] = []
        latency: list[float] = []
        for i in range(args.rounds):
            bare.append(bare_round())
            latency.append(mention(100 + i))
    finally:
        bare_generator.close()
        stop_processes(processes)
        fake.stop()
        server.stop()

    bare_s, latency_s = statistics.median(bare), statistics.median(latency)
    ratio = latency_s / bare_s
    paired = statistics.median(m / b for m, b in zip(latency, bare, strict=True))
    print(f"tiny model, {args.size}x{args.size}, {args.steps} steps, {THREADS} torch threads")
    print(f"bare generator:            median {bare_s:.3f} s over {args.rounds} runs")
    print(f"mention -> image posted:    median {latency_s:.3f} s over {args.rounds} runs")
    print(f"overhead ratio:            {ratio:.3f} (goal <= 1.15); "
          f"median of per-round ratios {paired:.3f}")
    print(f"bare_s={bare_s:.3f} latency_s={latency_s:.3f} paired_ratio={paired:.3f} "
          f"overhead_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
