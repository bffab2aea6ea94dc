"""What the policy checks cost per job (#15), on the tiny model, through the worker's path.

Each job is submitted (`JobQueue.submit`: the policy gate) and drawn in this process by a
`JobRunner` (the engine, image safety, storage, the finish that settles the quota), one
after another, under two settings against the same Redis:

- no policy: no blocklist, no quota, no classifier;
- policy: a prompt blocklist of 100 entries (words, phrases, `re:` expressions), a daily
  quota and GPU-time limit (never reached), and the tiny NSFW classifier of
  `imagine model tiny` (DIR/nsfw) judging every image.

The two alternate in ABBA blocks for --rounds rounds; each job's seconds from submit to
done are kept and the medians compared. The classifier's own time (one image, one forward
pass, median of many) and the gate's (admit alone) are measured apart.

Last line: `policy_ratio=… classifier_ms=… gate_ms=…` (ratio: policy over no policy).

    python -m bench.policy [--size 256] [--steps 20] [--jobs 6] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.stack import start_stack
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.core.storage import open_storage
from tasks.worker.celery_app import create_celery
from tasks.worker.runner import JobRunner

PROMPT = "a lighthouse on a cliff at dusk, oil painting"


def write_blocklist(path: Path, entries: int = 100) -> Path:
    """`entries` lines: single words, two-word phrases and every tenth a regular expression."""
    lines = ["# bench blocklist"]
    for i in range(entries):
        if i % 10 == 0:
            lines.append(f"re:forbidden\\W*{i}\\b")
        elif i % 3 == 0:
            lines.append(f"banned phrase{i}")
        else:
            lines.append(f"blockedword{i}")
    path.write_text("\n".join(lines) + "\n")
    return path


class Side:
    """One setting: its queue (and gate), its engine and runner."""

    def __init__(self, settings: Settings) -> None:
        from generator.engine import Engine  # noqa: PLC0415 - torch only when run

        client = redis_client(settings)
        self.queue = JobQueue(settings, client, create_celery(settings))
        self.engine = Engine.from_settings(settings)
        self.runner = JobRunner(settings, self.queue, open_storage(settings), self.engine,
                                lambda *_: None, AdapterRegistry())

    def job(self, request: ImageRequest, index: int) -> Job:
        return Job(requester=Requester(platform="api", user="bench"),
                   request=request.model_copy(update={"seed": 1000 + index}))

    def seconds(self, request: ImageRequest, index: int) -> float:
        """Submit and draw one job; seconds from submit to done."""
        began = time.perf_counter()
        job = self.queue.submit(self.job(request, index)).job
        self.runner.run(job.id)
        took = time.perf_counter() - began
        finished = self.queue.jobs.get(job.id)
        if finished.status is not JobStatus.done:
            raise SystemExit(f"job {job.id} ended {finished.status.value}: {finished.error}")
        return took


def gate_ms(side: Side, request: ImageRequest, count: int = 200) -> float:
    """Median milliseconds of the gate alone (ban, blocklist, quota charge, audit)."""
    times = []
    for index in range(count):
        job = side.job(request, index)
        began = time.perf_counter()
        side.queue.policy.admit(job)
        times.append(time.perf_counter() - began)
        side.queue.policy.quotas.refund(job.model_copy(update={"charged": 1}))
    return statistics.median(times) * 1000


def classifier_ms(side: Side, request: ImageRequest, count: int = 30) -> float:
    """Median milliseconds of the classifier on one image of the bench's size."""
    from PIL import Image  # noqa: PLC0415

    classifier = side.engine.safety.get()
    assert classifier is not None
    image = Image.effect_noise((request.width, request.height), 64).convert("RGB")
    classifier.classify([image])  # warm
    times = []
    for _ in range(count):
        began = time.perf_counter()
        classifier.classify([image])
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=6, help="jobs per block")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", default="2")
    args = parser.parse_args()

    stack = start_stack("policy", args.threads)
    try:
        plain_settings = stack.settings().model_copy(update={"max_jobs_per_user": 1000})
        policed_settings = plain_settings.model_copy(update={
            "prompt_blocklist": write_blocklist(stack.work / "blocklist.txt"),
            "daily_quota": 1_000_000, "daily_gpu_seconds": 1e9,
            "quota_overrides": {"discord:role:1": 5},
            "nsfw_model": str(stack.model_dir / "nsfw")})
        plain, policed = Side(plain_settings), Side(policed_settings)
        request = ImageRequest(prompt=PROMPT, width=args.size, height=args.size,
                               num_inference_steps=args.steps)
        plain.seconds(request, 0)  # model loads and warm caches, untimed
        policed.seconds(request, 0)
        times: dict[str, list[float]] = {"plain": [], "policy": []}
        index = 1
        for _ in range(args.rounds):
            for name, side in (("plain", plain), ("policy", policed), ("policy", policed),
                               ("plain", plain)):
                for _ in range(args.jobs):
                    times[name].append(side.seconds(request, index))
                    index += 1
        plain_s, policy_s = (statistics.median(times[k]) for k in ("plain", "policy"))
        ratio = policy_s / plain_s
        classifier = classifier_ms(policed, request)
        gate = gate_ms(policed, request)
        gate_plain = gate_ms(plain, request)
        print(f"{args.size} px, {args.steps} steps, {len(times['plain'])} jobs a side, "
              f"{args.threads} threads")
        print(f"no policy:  {plain_s:.3f} s per job (median)")
        print(f"policy:     {policy_s:.3f} s per job (median): blocklist of 100, quota, "
              f"tiny NSFW classifier")
        print(f"gate alone: {gate:.2f} ms per job with the policy, {gate_plain:.2f} ms without")
        print(f"classifier: {classifier:.1f} ms per image (one forward pass)")
        print(f"policy_ratio={ratio:.3f} classifier_ms={classifier:.1f} gate_ms={gate:.2f}")
    finally:
        stack.server.stop()


if __name__ == "__main__":
    main()
