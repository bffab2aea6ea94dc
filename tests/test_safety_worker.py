"""Image safety on the worker: the tiny NSFW classifier, verdicts per destination, blurred
copies, withheld images listed for admins, the audit, and a pipeline's own safety checker.

Everything runs in this process: a real Engine on the tiny model (with DIR/nsfw, the tiny
classifier `imagine model tiny` writes), a real JobRunner on the test's Redis, no worker.
The tiny classifier's scores are random but lie strictly between 0 and 1, so threshold 0.0
flags every image and 1.0 none.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.batching import BatchMember
from generator.errors import ModelError
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.names import BLOCKED_IMAGES_KEY
from tasks.policy.audit import AuditLog
from tasks.policy.safety import action_for, destination
from tasks.worker.celery_app import create_celery
from tasks.worker.runner import JobRunner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"width": 64, "height": 64, "num_inference_steps": 1, "seed": 3}


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, one_torch_thread: None):  # noqa: ANN201
    from generator.engine import Engine

    return Engine({"default": str(tiny_model_dir)}, device="cpu",
                  nsfw_model=str(tiny_model_dir / "nsfw"), nsfw_labels=("NSFW", "porn"))


Run = Callable[..., Job]


@pytest.fixture
def run(settings: Settings, engine) -> Run:  # noqa: ANN001
    """Submit a job as `requester` and draw it in this process; the finished Job."""
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))

    def run_job(requester: Requester, threshold: float, policy: dict[str, str] | None = None,
                **request: object) -> Job:
        changed = settings.model_copy(update={"nsfw_threshold": threshold,
                                              "nsfw_policy": policy or {}})
        runner = JobRunner(changed, queue, Storage(settings.images_dir), engine,
                           lambda *_: None, AdapterRegistry())
        job = queue.submit(Job(requester=requester, request=ImageRequest(
            prompt="a lighthouse", **{**FAST, **request}))).job  # type: ignore[arg-type]
        runner.run(job.id)
        finished = queue.jobs.get(job.id)
        assert finished.status is JobStatus.done, finished.error
        return finished

    return run_job


def pixels(settings: Settings, name: str) -> np.ndarray:
    data = Storage(settings.images_dir).read(name)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def audit_events(settings: Settings) -> list[tuple[str, str, float | None]]:
    log = AuditLog(settings, redis_client(settings))
    return [(e.event, e.outcome, e.nsfw_score) for e in log.last(50)
            if e.event.startswith("image.")]


def test_tiny_classifier_loads_through_from_pretrained_and_scores_in_one_pass(
        engine, tiny_model_dir: Path) -> None:  # noqa: ANN001
    from generator.safety import NsfwClassifier, SafetyModel

    classifier = engine.safety.get()
    assert classifier is engine.safety.get()  # loaded once per process
    assert classifier.labels == ["normal", "nsfw"] and classifier.indices == [1]
    scores = classifier.classify([Image.new("RGB", (64, 64), "red"), Image.new("L", (40, 90))])
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)
    assert classifier.classify([]) == []
    assert SafetyModel(None, ("nsfw",), "cpu", classifier.dtype).get() is None
    with pytest.raises(ModelError, match="IMAGINE_NSFW_LABELS"):
        NsfwClassifier(str(tiny_model_dir / "nsfw"), ("porn",))
    with pytest.raises(ModelError, match="IMAGINE_NSFW_MODEL"):
        NsfwClassifier(str(tiny_model_dir / "missing"), ("nsfw",))


@pytest.mark.parametrize(("platform", "channel", "extra", "expected", "default"), [
    ("discord", "1", {"nsfw": "1", "guild_id": "9"}, "discord_nsfw", "allow"),
    ("discord", "1", {"guild_id": "9"}, "discord", "block"),
    ("discord", "1", {"dm": "1"}, "discord_dm", "block"),
    ("discord", "1", {"dm": "1", "nsfw": "1"}, "discord_dm", "block"),
    ("slack", "C123", {}, "slack", "spoiler"),
    ("slack", "D123", {}, "slack_dm", "spoiler"),
    ("slack", "C123", {"dm": "1"}, "slack_dm", "spoiler"),
    ("web", "", {}, "web", "block"),
    ("api", "", {}, "api", "spoiler"),
    ("webhook", "", {}, "webhook", "spoiler"),
    ("cli", "", {}, "cli", "allow"),
    ("telegram", "", {}, "web", "block"),  # unknown: the strictest default
])
def test_destinations_and_their_default_actions(
        clean_env: None, platform: str, channel: str, extra: dict[str, str], expected: str,
        default: str) -> None:
    requester = Requester(platform=platform, channel=channel, extra=extra)
    assert destination(requester) == expected
    assert action_for(Settings(_env_file=None), requester) == default
    changed = Settings(_env_file=None, nsfw_policy=f"{expected}=spoiler")
    assert action_for(changed, requester) == "spoiler"


def test_threshold_zero_flags_every_image_and_one_none(run: Run, settings: Settings) -> None:
    requester = Requester(platform="cli", user="op")
    every = run(requester, 0.0, num_images=2)
    assert [(v.flagged, v.source, v.action) for v in every.verdicts] == [
        (True, "classifier", "allow")] * 2
    assert all(0.0 < v.score < 1.0 and v.blurred is None for v in every.verdicts)
    none = run(requester, 1.0)
    assert [(v.flagged, v.source, v.action) for v in none.verdicts] == [(False, "", "allow")]
    assert 0.0 < none.verdicts[0].score < 1.0
    assert every.notes == [] and none.notes == []
    # Allowed where it goes (the CLI), a flagged image is still in the trail.
    assert [event[:2] for event in audit_events(settings)] == [("image.flagged", "allowed")] * 2


def test_spoiler_outside_discord_stores_a_blurred_copy(run: Run, settings: Settings) -> None:
    job = run(Requester(platform="slack", user="U1", channel="C1"), 0.0)
    verdict = job.verdict(0)
    assert (verdict.flagged, verdict.action) == (True, "spoiler") and verdict.blurred
    original, blurred = pixels(settings, job.images[0]), pixels(settings, verdict.blurred)
    assert original.shape == blurred.shape
    # Blurred enough to hide detail: far less variation between neighbouring pixels.
    def detail(image: np.ndarray) -> float:
        return float(np.abs(np.diff(image, axis=1)).mean())

    assert detail(blurred) < detail(original) / 3
    assert not redis_client(settings).zcard(BLOCKED_IMAGES_KEY)
    assert audit_events(settings) == [("image.flagged", "spoiler", round(verdict.score, 4))]
    # Discord has spoilers of its own: no blurred copy.
    spoiled = run(Requester(platform="discord", user="7", channel="5"), 0.0,
                  {"discord": "spoiler"})
    assert spoiled.verdict(0).action == "spoiler" and spoiled.verdict(0).blurred is None


def test_block_keeps_the_image_for_admins_and_allow_in_age_restricted_channels(
        run: Run, settings: Settings) -> None:
    blocked = run(Requester(platform="discord", user="7", channel="5"), 0.0)
    assert blocked.verdict(0).action == "block" and blocked.verdict(0).flagged
    assert Storage(settings.images_dir).exists(blocked.images[0])  # kept, not delivered
    withheld = redis_client(settings).zrange(BLOCKED_IMAGES_KEY, 0, -1)
    assert withheld == [f"{blocked.id}:0".encode()]
    assert [e[:2] for e in audit_events(settings)] == [("image.blocked", "blocked")]
    adult = run(Requester(platform="discord", user="7", channel="6", extra={"nsfw": "1"}), 0.0)
    assert adult.verdict(0).action == "allow" and adult.verdict(0).flagged


def test_a_classifier_that_fails_fails_the_job_instead_of_delivering(
        settings: Settings, engine, tiny_model_dir: Path) -> None:  # noqa: ANN001
    from generator.safety import SafetyModel

    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    runner = JobRunner(settings, queue, Storage(settings.images_dir), engine, lambda *_: None,
                       AdapterRegistry())
    working, engine.safety = engine.safety, SafetyModel(
        str(tiny_model_dir / "missing"), ("nsfw",), "cpu", engine.dtype)
    try:
        job = queue.submit(Job(requester=Requester(platform="api", user="ci"),
                               request=ImageRequest(prompt="a boat", **FAST))).job  # type: ignore[arg-type]
        runner.run(job.id)
    finally:
        engine.safety = working
    failed = queue.jobs.get(job.id)
    assert failed.status is JobStatus.failed and failed.verdicts == []
    assert "could not be checked for safety" in (failed.error or "")
    assert "IMAGINE_NSFW_MODEL" in (failed.error or "")


@pytest.fixture
def safety_checker(engine) -> Iterator[None]:  # noqa: ANN001
    """diffusers' own StableDiffusionSafetyChecker (tiny CLIP, random weights) on the tiny
    pipeline, its concept thresholds lowered so that it withholds every image."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
              "num_attention_heads": 4, "image_size": 32, "patch_size": 8}
    text = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
            "num_attention_heads": 4}
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)).eval()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-2.0)  # cosine - (-2) > 0: every concept hits
    pipe = engine.pipeline()
    before = pipe.safety_checker, pipe.feature_extractor
    pipe.safety_checker = checker
    pipe.feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32},
                                                crop_size={"height": 32, "width": 32})
    yield
    pipe.safety_checker, pipe.feature_extractor = before


@pytest.mark.usefixtures("safety_checker")
def test_a_pipeline_flag_becomes_a_pipeline_verdict_with_a_note(
        run: Run, settings: Settings, engine) -> None:  # noqa: ANN001
    job = run(Requester(platform="cli", user="op"), 1.0, num_images=2)
    assert [(v.flagged, v.source, v.score, v.action) for v in job.verdicts] == [
        (True, "pipeline", 1.0, "allow")] * 2
    assert job.notes == ["The model's own safety checker withheld image 1: it came back black.",
                         "The model's own safety checker withheld image 2: it came back black."]
    assert int(pixels(settings, job.images[0]).max()) == 0  # what the checker returned
    chinese = run(Requester(platform="cli", user="op", extra={"locale": "zh-CN"}), 1.0)
    assert chinese.notes == ["模型自带的安全检查器拦截了第 1 张图片：返回的是一张全黑图片。"]
    # Blocked where it goes: the front ends say it was withheld, no note repeats it.
    blocked = run(Requester(platform="web", user="1.2.3.4"), 1.0)
    assert blocked.verdict(0).action == "block" and blocked.notes == []
    # Shared pipeline calls carry the flag per row too.
    outcomes = engine.generate_batch([BatchMember(ImageRequest(prompt=p, **FAST))
                                      for p in ("a cat", "a dog")])
    assert [i.pipeline_flagged for o in outcomes for i in o.images or []] == [True, True]
