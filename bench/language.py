"""What translation and enhancement add to a job (#16), with the tiny language models.

Jobs are submitted (`JobQueue.submit`) and drawn in this process by a `JobRunner`, one after
another, against one Redis, under three settings:

- plain: an English prompt, no language model;
- translate: a Chinese prompt with IMAGINE_TRANSLATE_MODEL (the tiny MarianMT);
- enhance: `--enhance` with IMAGINE_ENHANCE_MODEL (the tiny Qwen2), a new seed each job so
  every expansion is computed, not read from the cache.

Every job of the translate side has the same prompt, so after its first job the translation
comes from the Redis cache: that side measures the cached path; the models' own cold and
cached milliseconds per call are measured apart (cold: a text never seen; cached: the same
text again, through TextPrep and Redis).

Last line: `translate_ms=… enhance_ms=…` (milliseconds added per job, medians, against
plain).

    python -m bench.language [--size 128] [--steps 4] [--jobs 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

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
from tasks.worker.text_prep import TextPrep

ENGLISH = "a lighthouse on a cliff at dusk, oil painting"
CHINESE = "黄昏时悬崖上的灯塔，油画"


class Side:
    def __init__(self, settings: Settings, engine: object) -> None:
        self.queue = JobQueue(settings, redis_client(settings), create_celery(settings))
        self.runner = JobRunner(settings, self.queue, open_storage(settings), engine,  # type: ignore[arg-type]
                                lambda *_: None, AdapterRegistry())

    def seconds(self, request: ImageRequest) -> float:
        began = time.perf_counter()
        job = self.queue.submit(Job(requester=Requester(platform="api", user="bench"),
                                    request=request)).job
        self.runner.run(job.id)
        took = time.perf_counter() - began
        finished = self.queue.jobs.get(job.id)
        if finished.status is not JobStatus.done:
            raise SystemExit(f"job {job.id} ended {finished.status.value}: {finished.error}")
        return took


def call_ms(prep: TextPrep, count: int = 10) -> tuple[float, float, float, float]:
    """(translate cold, translate cached, enhance cold, enhance cached) median ms per call."""
    times: dict[str, list[float]] = {k: [] for k in ("tc", "tw", "ec", "ew")}
    for index in range(count):
        text = f"{CHINESE} {index}"
        for key in ("tc", "tw"):  # the first never seen, the second from the cache
            began = time.perf_counter()
            prep.translation(text)
            times[key].append(time.perf_counter() - began)
        for key in ("ec", "ew"):
            began = time.perf_counter()
            prep.enhancement(ENGLISH, 5000 + index)
            times[key].append(time.perf_counter() - began)
    tc, tw, ec, ew = (statistics.median(times[k]) * 1000 for k in ("tc", "tw", "ec", "ew"))
    return tc, tw, ec, ew


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--threads", default="2")
    args = parser.parse_args()

    from generator.engine import Engine  # noqa: PLC0415 - torch only when run
    from generator.tiny_language import build_tiny_language_models  # noqa: PLC0415

    stack = start_stack("language", args.threads)
    try:
        translator, enhancer = build_tiny_language_models(stack.work / "language")
        base = stack.settings().model_copy(update={"max_jobs_per_user": 1000})
        with_models = base.model_copy(update={"translate_model": str(translator),
                                              "enhance_model": str(enhancer)})
        engine = Engine.from_settings(base)
        plain, language = Side(base, engine), Side(with_models, engine)
        request = ImageRequest(prompt=ENGLISH, width=args.size, height=args.size,
                               num_inference_steps=args.steps, seed=1)
        plain.seconds(request)  # the image model loads, untimed
        language.seconds(request.model_copy(update={"prompt": CHINESE, "enhance": True}))
        times: dict[str, list[float]] = {"plain": [], "translate": [], "enhance": []}
        for index in range(args.jobs):
            seeded = request.model_copy(update={"seed": 100 + index})
            times["plain"].append(plain.seconds(seeded))
            times["translate"].append(language.seconds(seeded.model_copy(
                update={"prompt": CHINESE})))
            times["enhance"].append(language.seconds(seeded.model_copy(
                update={"enhance": True})))
        plain_s = statistics.median(times["plain"])
        added = {k: (statistics.median(times[k]) - plain_s) * 1000
                 for k in ("translate", "enhance")}
        prep = TextPrep(with_models, redis_client(with_models), lambda: "cpu")
        tc, tw, ec, ew = call_ms(prep)
        print(f"{args.size} px, {args.steps} steps, {args.jobs} jobs a side, "
              f"{args.threads} threads")
        print(f"plain job:  {plain_s * 1000:.0f} ms (median)")
        print(f"translate:  +{added['translate']:.0f} ms per job (cached after the first); "
              f"a call {tc:.1f} ms cold, {tw:.2f} ms cached")
        print(f"enhance:    +{added['enhance']:.0f} ms per job (a new seed each); "
              f"a call {ec:.1f} ms cold, {ew:.2f} ms cached")
        print(f"translate_ms={added['translate']:.1f} enhance_ms={added['enhance']:.1f}")
    finally:
        stack.server.stop()


if __name__ == "__main__":
    main()
