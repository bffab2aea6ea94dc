"""Queue overhead: submit→done latency against the bare generator, and worker busy fraction.

Runs its own Redis (the embedded server), one real `imagine worker --queues generate`
process and the tiny model, all on this machine. Prints figures, then one line of
`name=value` pairs.

    python -m bench.queue_overhead [--size 256] [--steps 20] [--rounds 7] [--jobs 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.stack import BareGenerator, start_stack
from generator.request import ImageRequest
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.worker.celery_app import create_celery

ROOT = Path(__file__).resolve().parent.parent

THREADS = "2"


def wait_done(queue: JobQueue, job_id: str, timeout: float = 300) -> Job:
    for _event in queue.watch(job_id, timeout):
        pass
    job = queue.jobs.get(job_id)
    if job.status is not JobStatus.done:
        raise SystemExit(f"job {job_id} ended {job.status.value}: {job.error}")
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()

    stack = start_stack("queue", THREADS, IMAGINE_MAX_QUEUE=str(args.jobs + 10),
                        IMAGINE_MAX_JOBS_PER_USER=str(args.jobs + 10))
    server, env = stack.server, stack.env
    settings = stack.settings()
    request = ImageRequest(prompt="a red fox in snow", width=args.size, height=args.size,
                           num_inference_steps=args.steps, seed=1)

    # The bare generator in a process of its own (as the worker draws), same threads and request.
    text = f"{request.prompt} --size {args.size}x{args.size} --steps {args.steps} --seed 1"
    bare_generator = BareGenerator.warmed(env, text)
    bare = [bare_generator.seconds(text) for _ in range(args.rounds)]
    bare_generator.close()

    worker = subprocess.Popen([sys.executable, "-m", "bots.cli", "worker", "--queues", "generate",
                               "--loglevel", "warning"], env=env, cwd=ROOT)
    try:
        queue = JobQueue(settings, redis_client(settings), create_celery(settings))
        deadline = time.monotonic() + 120
        while not queue.alive_workers("generate"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("the worker did not start")
            time.sleep(0.1)
        wait_done(queue, queue.submit(Job(requester=Requester(platform="api", user="warm"),
                                          request=request)).job_id)
        latency, in_worker = [], []
        for i in range(args.rounds):
            job = Job(requester=Requester(platform="api", user="bench"),
                      request=request.with_seed(100 + i))
            start = time.perf_counter()
            done = wait_done(queue, queue.submit(job).job_id)
            latency.append(time.perf_counter() - start)
            in_worker.append(done.generation_seconds or float("nan"))

        batch = [queue.submit(Job(requester=Requester(platform="api", user="batch"),
                                  request=request.with_seed(1000 + i))).job_id
                 for i in range(args.jobs)]
        finished = [wait_done(queue, job_id) for job_id in batch]
        wall = max(j.finished_at for j in finished) - min(j.started_at for j in finished)  # type: ignore[type-var,operator]
        busy = sum(j.generation_seconds or 0.0 for j in finished) / wall
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()

    bare_s, latency_s = statistics.median(bare), statistics.median(latency)
    ratio = latency_s / bare_s
    # The same jobs' own time inside the pipeline: separates queue overhead from the
    # difference between this process and the worker process.
    paired = statistics.median(lat / gen for lat, gen in zip(latency, in_worker, strict=True))
    print(f"tiny model, {args.size}x{args.size}, {args.steps} steps, {THREADS} torch threads")
    print(f"bare generator:        median {bare_s:.3f} s over {args.rounds} runs")
    print(f"submit -> done (queue): median {latency_s:.3f} s over {args.rounds} runs")
    print(f"overhead ratio:        {ratio:.3f} (goal <= 1.10)")
    print(f"paired ratio:          {paired:.3f} (submit->done over the same job's pipeline time)")
    print(f"{args.jobs} queued jobs: wall {wall:.1f} s, generating {busy * wall:.1f} s, "
          f"busy fraction {busy:.3f} (goal >= 0.95)")
    print(f"overhead_ratio={ratio:.3f} paired_ratio={paired:.3f} busy_fraction={busy:.3f} "
          f"bare_s={bare_s:.3f} "
          f"latency_s={latency_s:.3f}")


if __name__ == "__main__":
    main()
