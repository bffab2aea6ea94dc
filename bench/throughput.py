"""Throughput, fairness and preview cost of one generate worker (tiny model, CPU).

16 compatible jobs from 4 users are queued at once (each user's 4 jobs one after another,
the order that is worst for fairness) before one real `imagine worker` starts and draws
them, three times against the same Redis, each run with a fresh worker:

1. IMAGINE_MAX_BATCH=1, no previews: the baseline, one job per pipeline call;
2. IMAGINE_MAX_BATCH=4, no previews: cross-job batching;
3. IMAGINE_MAX_BATCH=4 with IMAGINE_PREVIEW_INTERVAL (default 1 s): what previews cost.

The three runs alternate for --rounds rounds and each keeps its fastest.

Prints images per second of each run, each user's mean wait (from the first job's start to done) in run 2,
and one line of `name=value` pairs: batch_speedup (run 2 over run 1), fairness_ratio
(the slowest user's mean wait over the fastest's) and preview_overhead (run 3's time over
run 2's, minus 1).

    python -m bench.throughput [--size 256] [--steps 20] [--preview-interval 1.0] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.queue_overhead import wait_done
from bench.stack import BenchStack, start_stack
from generator.request import ImageRequest
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, Requester
from tasks.core.queue import JobQueue
from tasks.worker.celery_app import create_celery

ROOT = Path(__file__).resolve().parent.parent
THREADS = "2"
USERS = 4
JOBS_PER_USER = 4


def start_worker(stack: BenchStack, queue: JobQueue, **env: str) -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "worker", "--queues", "generate", "--loglevel",
         "warning"], env={**stack.env, **env}, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not queue.alive_workers("generate"):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise SystemExit("the worker did not start")
        time.sleep(0.1)
    return worker


def stop_worker(worker: subprocess.Popen[bytes], queue: JobQueue) -> None:
    worker.terminate()
    worker.wait(60)
    # The next run's worker must be the only live one: wait out this one's heartbeat.
    deadline = time.monotonic() + 60
    while queue.alive_workers("generate") and time.monotonic() < deadline:
        time.sleep(0.2)


def run(stack: BenchStack, queue: JobQueue, request: ImageRequest, label: str,
        **env: str) -> tuple[float, dict[str, float], list[Job]]:
    """Images per second, each user's mean wait, and the finished jobs of one run.

    Every job is queued before the worker starts, so each run sees the same queue; times
    count from the moment the first job started drawing (the model is loaded by then)."""
    ids = []
    for user in range(USERS):
        for i in range(JOBS_PER_USER):
            job = Job(requester=Requester(platform="api", user=f"user{user}"),
                      request=request.model_copy(update={
                          "prompt": f"{request.prompt}, study {user}-{i}",
                          "seed": 1000 + user * 10 + i}))
            ids.append(queue.submit(job).job_id)
    worker = start_worker(stack, queue, **env)
    try:
        done = [wait_done(queue, job_id) for job_id in ids]
    finally:
        stop_worker(worker, queue)
    first = min(job.started_at or 0.0 for job in done)
    last = max(job.finished_at or 0.0 for job in done)
    images_per_s = len(done) / (last - first)
    waits: dict[str, list[float]] = {}
    for job in done:
        waits.setdefault(job.requester.user, []).append((job.finished_at or 0.0) - first)
    means = {user: statistics.mean(values) for user, values in waits.items()}
    batches = sorted({job.batch_size for job in done})
    drawing = statistics.mean(job.generation_seconds or 0.0 for job in done)
    print(f"{label}: {len(done)} images in {last - first:.2f} s, {images_per_s:.2f} images/s, "
          f"batch sizes {batches}, {drawing:.3f} s per pipeline call")
    return images_per_s, means, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preview-interval", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    stack = start_stack("throughput", THREADS, IMAGINE_MAX_QUEUE="100",
                        IMAGINE_MAX_JOBS_PER_USER=str(JOBS_PER_USER + 1))
    try:
        settings = stack.settings()
        queue = JobQueue(settings, redis_client(settings), create_celery(settings))
        request = ImageRequest(prompt="a red fox in snow", width=args.size, height=args.size,
                               num_inference_steps=args.steps)
        configs = {
            "alone": ("one job per call", {"IMAGINE_MAX_BATCH": "1",
                                           "IMAGINE_PREVIEW_INTERVAL": "0"}),
            "batched": ("batches of up to 4", {"IMAGINE_MAX_BATCH": "4",
                                               "IMAGINE_PREVIEW_INTERVAL": "0"}),
            "previews": (f"batches, previews every {args.preview_interval} s",
                         {"IMAGINE_MAX_BATCH": "4",
                          "IMAGINE_PREVIEW_INTERVAL": str(args.preview_interval)}),
        }
        best: dict[str, tuple[float, dict[str, float], list[Job]]] = {}
        # Rounds alternate the three runs; each keeps its fastest round (the least disturbed
        # by whatever else the machine did), so slow drift does not favour one of them.
        for _ in range(args.rounds):
            for name, (label, env) in configs.items():
                result = run(stack, queue, request, label, **env)
                if name not in best or result[0] > best[name][0]:
                    best[name] = result
        alone, batched, previewed = (best[name][0] for name in configs)
        means, done = best["batched"][1], best["batched"][2]
        with_previews = best["previews"][2]
    finally:
        stack.server.stop()

    speedup = batched / alone
    fairness = max(means.values()) / min(means.values())
    overhead = batched / previewed - 1
    previews = sum(job.preview for job in with_previews)
    print(f"tiny model, {args.size}x{args.size}, {args.steps} steps, {THREADS} torch threads, "
          f"{USERS} users x {JOBS_PER_USER} jobs queued user after user")
    print(f"batching speedup: {speedup:.2f}x (goal >= 1.4)")
    print("mean wait per user (batches): " + ", ".join(
        f"{user} {seconds:.2f} s" for user, seconds in sorted(means.items())))
    print(f"fairness ratio (slowest user's mean wait / fastest's): {fairness:.2f} (goal <= 1.5)")
    print(f"previews: {previews} made, cost {overhead:.3f} of generation time (goal <= 0.05)")
    print(f"batch_speedup={speedup:.3f} fairness_ratio={fairness:.3f} "
          f"preview_overhead={overhead:.3f} images_per_s_alone={alone:.3f} "
          f"images_per_s_batched={batched:.3f} previews={previews} jobs={len(done)}")


if __name__ == "__main__":
    main()
