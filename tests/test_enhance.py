"""--enhance (#16): the tiny Qwen2 instruct model read back through `from_pretrained`,
expansions the same for the same seed, bounded by tokens and time, cleaned to one line,
refused by the grammar without a model, and the Enhance button making a job with
enhance=True that the worker expands (the job keeps the idea as prompt_original).

In this process: the real tiny image model in a real Engine, a real JobRunner on the test's
Redis, the tiny language models `imagine model tiny` writes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from bots.errors import PromptError
from bots.followups import BUTTONS, ENHANCE, FollowUpLimits, follow_up, result_rows
from bots.grammar import format_request, parse, request_from_fields
from bots.limits import Limits
from generator.enhance import Enhancer, clean_prompt
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.worker.celery_app import create_celery
from tasks.worker.runner import JobRunner
from tasks.worker.text_prep import enhancement_key

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"width": 64, "height": 64, "num_inference_steps": 1, "seed": 11}


@pytest.fixture(scope="module")
def enhance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generator.tiny_language import build_tiny_enhancer

    return build_tiny_enhancer(tmp_path_factory.mktemp("language") / "enhance")


@pytest.fixture(scope="module")
def enhancer(enhance_dir: Path) -> Enhancer:
    return Enhancer(str(enhance_dir), "cpu")


def expand(enhancer: Enhancer, seed: int, max_tokens: int = 24, timeout: float = 30.0) -> str:
    return enhancer.expand("a cat on a windowsill", seed=seed, max_tokens=max_tokens,
                           timeout=timeout, max_length=1000)


def test_the_same_seed_expands_the_same_way_and_another_differently(
        enhancer: Enhancer) -> None:
    assert type(enhancer.model).__name__ == "Qwen2ForCausalLM"
    first = expand(enhancer, seed=1)
    assert first and "\n" not in first and first == expand(enhancer, seed=1)
    assert expand(enhancer, seed=2) != first


def test_expansion_is_bounded_by_tokens_and_by_time(enhancer: Enhancer) -> None:
    short = expand(enhancer, seed=3, max_tokens=3)
    assert len(enhancer.tokenizer(short)["input_ids"]) <= 3 + 2  # a word may re-split
    began = time.monotonic()
    expand(enhancer, seed=3, max_tokens=400, timeout=0.05)
    assert time.monotonic() - began < 2.0


def test_answers_are_cleaned_to_one_prompt_line() -> None:
    answer = 'Sure! Here is your prompt:\n"A cat, golden hour, oil painting"\nHope it helps'
    assert clean_prompt(answer, 100) == "A cat, golden hour, oil painting"
    assert clean_prompt("word " * 50, 22) == "word word word word"


def test_enhance_is_refused_without_a_model_and_the_button_follows_the_setting() -> None:
    with pytest.raises(PromptError, match="IMAGINE_ENHANCE_MODEL"):
        parse("a cat --enhance", Limits())
    enhancing = dataclasses.replace(Limits(), enhance=True)
    request = parse("一只猫 --raw --enhance --no dog", enhancing)  # switches take no value
    assert request.raw and request.enhance and request.negative_prompt == "dog"
    assert parse(format_request(request, enhancing), enhancing) == request
    fields = request_from_fields({"prompt": "a cat", "raw": "1", "enhance": "0"}, enhancing)
    assert fields.raw and not fields.enhance  # web raw=1, REST "raw": true
    job = Job(requester=Requester(platform="api", user="u"), request=parse("a cat", Limits()),
              status=JobStatus.done, images=["x"], seeds=[1])
    names = [[b.name for b, _ in row] for row in result_rows(job, enhance=True)]
    assert ENHANCE in names[-1] and ENHANCE not in result_rows(job)[-1]
    assert BUTTONS[ENHANCE].name == ENHANCE


def test_the_enhance_button_makes_a_job_the_worker_expands(
        settings: Settings, enhance_dir: Path, tiny_model_dir: Path) -> None:
    from generator.engine import Engine

    changed = settings.model_copy(update={"enhance_model": str(enhance_dir),
                                          "enhance_max_tokens": 16})
    queue = JobQueue(changed, redis_client(settings), create_celery(settings))
    parent = Job(requester=Requester(platform="api", user="u"), status=JobStatus.done,
                 request=parse("a cat", Limits()).model_copy(update=FAST), images=["x"],
                 seeds=[11])
    request = follow_up(parent, 0, ENHANCE, FollowUpLimits())
    assert request.enhance and request.seed is None
    job = queue.submit(Job(requester=parent.requester, request=request)).job
    engine = Engine({"default": str(tiny_model_dir)}, device="cpu")
    JobRunner(changed, queue, Storage(settings.images_dir), engine, lambda *_: None,
              AdapterRegistry()).run(job.id)
    done = queue.jobs.get(job.id)
    assert done.status is JobStatus.done, done.error
    assert done.enhanced and done.prompt_original == "a cat" and not done.request.enhance
    key = enhancement_key(str(enhance_dir), "a cat", job.request.seed or 0, 16)
    assert redis_client(settings).get(key).decode() == done.request.prompt
