"""Prompts in any language (#16): language detection, the tiny MarianMT read back through
`from_pretrained`, a Chinese prompt translated on the worker before the pipeline draws it
(the PNG's parameters tell both texts), --raw, the Redis cache and the blocklist after
translation.

Everything runs in this process: the real tiny image model in a real Engine, a real
JobRunner on the test's Redis, the tiny translation model `imagine model tiny` writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bots.grammar import parse
from bots.limits import Limits
from bots.recall import recall_png
from generator import png
from generator.translate import Translator, detect_language, translate
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.policy.audit import AuditLog
from tasks.worker.celery_app import create_celery
from tasks.worker.runner import JobRunner
from tasks.worker.text_prep import TextPrep, translation_key

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHINESE = "一只猫坐在窗台上"
FAST = {"width": 64, "height": 64, "num_inference_steps": 1, "seed": 5}


@pytest.fixture(scope="module")
def language_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generator.tiny_language import build_tiny_language_models

    folder = tmp_path_factory.mktemp("language")
    build_tiny_language_models(folder)
    return folder


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, one_torch_thread: None):  # noqa: ANN201
    from generator.engine import Engine

    return Engine({"default": str(tiny_model_dir)}, device="cpu")


Draw = Callable[..., Job]


@pytest.fixture
def draw(settings: Settings, engine, language_dir: Path) -> Draw:  # noqa: ANN001
    """Submit a job with IMAGINE_TRANSLATE_MODEL set (and `changes`) and draw it here."""
    def run(prompt: str, changes: dict[str, object] | None = None, **request: object) -> Job:
        changed = settings.model_copy(update={
            "translate_model": str(language_dir / "translate"), **(changes or {})})
        queue = JobQueue(changed, redis_client(settings), create_celery(settings))
        runner = JobRunner(changed, queue, Storage(settings.images_dir), engine,
                           lambda *_: None, AdapterRegistry())
        job = Job(requester=Requester(platform="api", user="u"),
                  request=parse(prompt, Limits()).model_copy(update=FAST | request))
        submitted = queue.submit(job).job
        runner.run(submitted.id)
        return queue.jobs.get(submitted.id)

    return run


def test_language_is_detected_from_the_script_then_from_latin_words() -> None:
    assert detect_language(CHINESE) == "zh"
    assert detect_language("猫の城") == "ja"  # kana makes kanji Japanese
    assert detect_language("바다 위의 배") == "ko"
    assert detect_language("кот в сапогах") == "ru"
    assert detect_language("猫, 4k, masterpiece, highly detailed") == "zh"
    assert detect_language("a portrait of an old sailor, oil painting") == "en"
    assert detect_language("un chat noir sur un tapis rouge") == "fr"  # py3langid, sure
    assert detect_language("gato") == "en"  # too short to tell: left alone
    assert detect_language("1234 !!") is None


def test_tiny_marian_loads_with_from_pretrained_and_translates_deterministically(
        language_dir: Path) -> None:
    model = Translator(str(language_dir / "translate"), "cpu")
    assert type(model.model).__name__ == "MarianMTModel" and model.kind == "pair"
    first = model.translate(CHINESE, "zh")
    assert first and "\n" not in first and first == model.translate(CHINESE, "zh")
    assert translate(str(language_dir / "translate"), "cpu", "a red fox") is None  # English


def test_a_chinese_prompt_is_drawn_from_its_translation_and_the_png_keeps_both(
        draw: Draw, settings: Settings, language_dir: Path) -> None:
    english = translate(str(language_dir / "translate"), "cpu", CHINESE)
    assert english is not None and english.language == "zh"
    job = draw(f"{CHINESE} --no 模糊")
    assert job.status is JobStatus.done, job.error
    assert job.request.prompt == english.text  # what the pipeline was given
    assert (job.prompt_original, job.negative_original) == (CHINESE, "模糊")
    assert job.prompt_language == "zh" and not job.enhanced
    parameters = png.read_parameters(Storage(settings.images_dir).read(job.images[0]))
    assert parameters is not None
    parsed = png.parse_parameters(parameters)
    assert parsed.prompt == english.text  # the engine wrote what it drew
    assert parsed.entries[png.ORIGINAL_PROMPT] == CHINESE
    assert parsed.entries[png.ORIGINAL_NEGATIVE] == "模糊"
    assert parsed.entries[png.PROMPT_LANGUAGE] == "zh"
    recalled = recall_png(Storage(settings.images_dir).read(job.images[0]), Limits()).request
    assert recalled.prompt == english.text and recalled.raw  # drawn again as it was drawn


def test_raw_draws_the_prompt_as_written(draw: Draw) -> None:
    job = draw(f"{CHINESE} --raw")
    assert job.status is JobStatus.done, job.error
    assert job.request.prompt == CHINESE and job.prompt_original is None


def test_a_translation_is_read_from_the_cache(settings: Settings, language_dir: Path) -> None:
    source = str(language_dir / "translate")
    prep = TextPrep(settings.model_copy(update={"translate_model": source}),
                    redis_client(settings), lambda: "cpu")
    text, language = prep.translation("кот в сапогах")
    assert language == "ru" and (text, language) == prep.translation("кот в сапогах")
    # A cached entry is what is used, whatever the model would say now.
    key = translation_key(source, "кот в сапогах")
    assert json.loads(redis_client(settings).get(key)) == {"text": text, "language": "ru"}
    redis_client(settings).set(key, '{"text": "puss in boots", "language": "ru"}')
    assert prep.translation("кот в сапогах") == ("puss in boots", "ru")


def test_a_translation_that_hits_the_blocklist_fails_the_job(
        draw: Draw, settings: Settings, language_dir: Path, tmp_path: Path) -> None:
    english = translate(str(language_dir / "translate"), "cpu", "山上的日落")
    assert english is not None
    word = next(w for w in english.text.split() if w not in "山上的日落")
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text(f"re:{re.escape(word)}\n", encoding="utf-8")
    job = draw("山上的日落", {"prompt_blocklist": blocklist})
    assert job.status is JobStatus.failed and "refused" in (job.error or "")
    audit = AuditLog(settings, redis_client(settings)).last(5)
    assert any(e.event == "policy.refused" and e.job == job.id for e in audit)


def test_the_text_queue_translates_a_waiting_job_into_the_cache(
        settings: Settings, language_dir: Path) -> None:
    from tasks.names import PREPARE_TEXT_TASK, TEXT_QUEUE
    from tasks.worker.text_task import register_text

    source = str(language_dir / "translate")
    changed = settings.model_copy(update={"translate_model": source, "text_queue": True})
    app = create_celery(changed)
    register_text(app)
    queue = JobQueue(changed, redis_client(settings), app)
    job = queue.submit(Job(requester=Requester(platform="api", user="u"),
                           request=parse("кот в сапогах", Limits()))).job
    assert redis_client(settings).llen(TEXT_QUEUE) == 1  # sent with the job, before drawing
    app.tasks[PREPARE_TEXT_TASK](job.id)  # what `imagine worker --queues text` runs
    cached = redis_client(settings).get(translation_key(source, "кот в сапогах"))
    assert cached is not None and json.loads(cached)["language"] == "ru"
