"""Cross-job batching in the engine (Engine.generate_batch) on the tiny model.

Batched rows are compared with the same jobs drawn alone: on CPU with one torch thread
they match closely, not bit for bit (batched matrix products round differently in the
last float bits): at most 2 of 255 per channel, on under 1 % of the pixels. A one-member
batch is byte-identical to generate().
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.batching import BatchMember, BatchOutcome
from generator.errors import GenerationCancelled
from generator.png import read_parameters
from generator.request import ImageRequest

FAST = dict(width=64, height=64, num_inference_steps=4, guidance_scale=7.0)
MAX_DIFF = 2  # of 255, per channel
MAX_SHARE = 0.01  # of the pixels that differ at all


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, one_torch_thread: None):  # noqa: ANN201
    from generator.engine import Engine

    return Engine({"default": str(tiny_model_dir)}, device="cpu")


def job(prompt: str, seed: int, **changes: object) -> ImageRequest:
    return ImageRequest(prompt=prompt, seed=seed, **{**FAST, **changes})  # type: ignore[arg-type]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def assert_close(batched: bytes, alone: bytes) -> None:
    a, b = pixels(batched), pixels(alone)
    assert a.shape == b.shape
    assert int(np.abs(a - b).max()) <= MAX_DIFF
    assert float((a != b).any(axis=-1).mean()) <= MAX_SHARE


def images_of(outcome: BatchOutcome) -> list:  # noqa: ANN401
    assert outcome.error is None, outcome.error
    assert outcome.images is not None
    return outcome.images


JOBS = [job("a cat", 1), job("a dog on a hill", 5, num_images=2),
        job("a red fox", 9, negative_prompt="blurry"), job("blue sky", 4294967295, num_images=2)]


def test_batched_jobs_match_their_solo_images_with_their_own_seeds_and_text(engine) -> None:  # noqa: ANN001
    outcomes = engine.generate_batch([BatchMember(r) for r in JOBS])
    assert len(outcomes) == len(JOBS)
    for request, outcome in zip(JOBS, outcomes, strict=True):
        alone = engine.generate(request)
        batched = images_of(outcome)
        assert [i.seed for i in batched] == [i.seed for i in alone]
        for got, want in zip(batched, alone, strict=True):
            assert got.parameters == want.parameters
            assert read_parameters(got.png) == want.parameters
            assert (got.width, got.height) == (64, 64) and got.image is not None
            assert_close(got.png, want.png)
    assert [i.seed for i in images_of(outcomes[1])] == [5, 6]
    assert [i.seed for i in images_of(outcomes[3])] == [4294967295, 0]  # wraps like generate
    assert "Negative prompt: blurry" in images_of(outcomes[2])[0].parameters


def test_one_member_batch_is_byte_identical_to_generate(engine) -> None:  # noqa: ANN001
    request = job("a lighthouse", 7, num_images=2)
    [outcome] = engine.generate_batch([BatchMember(request)])
    assert [i.png for i in images_of(outcome)] == [i.png for i in engine.generate(request)]


def test_weighted_prompts_of_other_lengths_are_drawn_alone_and_exact(engine) -> None:  # noqa: ANN001
    long = "(a castle:1.2), " + ", ".join(f"tower {i}" for i in range(40))
    jobs = [job("(a cat:1.3)", 2), job(long, 3), job("a plain dog", 4)]
    outcomes = engine.generate_batch([BatchMember(r) for r in jobs])
    for request, outcome in zip(jobs, outcomes, strict=True):
        [alone] = engine.generate(request)
        [got] = images_of(outcome)
        assert got.parameters == alone.parameters
        assert_close(got.png, alone.png)
    # The weighted and the long prompt were each alone in their group: drawn by generate.
    assert images_of(outcomes[0])[0].png == engine.generate(jobs[0])[0].png


def test_weighted_prompts_of_one_length_share_the_call(engine) -> None:  # noqa: ANN001
    jobs = [job("(a cat:1.3)", 2), job("a [dog] (on a hill)", 3, negative_prompt="(blurry:1.2)")]
    reports: list[int] = []
    members = [BatchMember(r, on_progress=lambda s, t, p: reports.append(s)) for r in jobs]
    outcomes = engine.generate_batch(members)
    # One shared call: the two members hear each step one after the other.
    assert reports == [1, 1, 2, 2, 3, 3, 4, 4]
    for request, outcome in zip(jobs, outcomes, strict=True):
        [alone] = engine.generate(request)
        [got] = images_of(outcome)
        assert got.parameters == alone.parameters
        assert_close(got.png, alone.png)


def test_cancelled_member_stops_alone_and_the_others_keep_their_images(engine) -> None:  # noqa: ANN001
    steps: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def progress(index: int):  # noqa: ANN202
        return lambda step, total, preview: steps[index].append(step)

    members = [
        BatchMember(JOBS[0], on_progress=progress(0)),
        BatchMember(JOBS[1], on_progress=progress(1), should_cancel=lambda: len(steps[1]) >= 2),
        BatchMember(JOBS[2], on_progress=progress(2)),
    ]
    outcomes = engine.generate_batch(members)
    assert isinstance(outcomes[1].error, GenerationCancelled) and outcomes[1].images is None
    assert steps[1] == [1, 2] and steps[0] == steps[2] == [1, 2, 3, 4]
    for index in (0, 2):
        [alone] = engine.generate(JOBS[index])
        assert_close(images_of(outcomes[index])[0].png, alone.png)


def test_every_member_cancelled_stops_the_call(engine) -> None:  # noqa: ANN001
    seen: list[int] = []
    members = [BatchMember(r, on_progress=lambda s, t, p: seen.append(s),
                           should_cancel=lambda: bool(seen)) for r in JOBS[:2]]
    outcomes = engine.generate_batch(members)
    assert all(isinstance(o.error, GenerationCancelled) for o in outcomes)
    assert seen == [1, 1]  # both heard step 1, then the loop stopped
    already = engine.generate_batch([BatchMember(JOBS[0], should_cancel=lambda: True),
                                     BatchMember(JOBS[2])])
    assert "before it started" in str(already[0].error) and already[1].error is None


def test_failing_members_do_not_fail_the_others(engine) -> None:  # noqa: ANN001
    source = Image.new("RGB", (64, 64), (200, 40, 40))

    def load_image(name: str) -> Image.Image:
        if name == "missing":
            raise FileNotFoundError("image missing is gone")
        return source

    common = dict(mode="img2img", strength=0.6)
    good = [job("a cat", 1, source_image="red", **common),
            job("a dog", 2, source_image="red", **common)]
    bad = job("a fox", 3, source_image="missing", **common)

    def broken(step: int, total: int, preview: object) -> None:
        raise RuntimeError("chat is down")

    members = [BatchMember(good[0]), BatchMember(bad), BatchMember(good[1]),
               BatchMember(good[0], on_progress=broken)]
    outcomes = engine.generate_batch(members, load_image=load_image)
    assert isinstance(outcomes[1].error, FileNotFoundError)
    assert isinstance(outcomes[3].error, RuntimeError) and "chat is down" in str(outcomes[3].error)
    for index, request in ((0, good[0]), (2, good[1])):
        [alone] = engine.generate(request, load_image=load_image)
        [got] = images_of(outcomes[index])
        assert got.parameters == alone.parameters and "Denoising strength: 0.6" in got.parameters
        assert_close(got.png, alone.png)


def test_failing_shared_loras_give_each_member_its_own_error(engine) -> None:  # noqa: ANN001
    # The LoRA set is shared: when applying it fails, each member is drawn alone, and each
    # gets the error that names what it asked for.
    jobs = [job("a cat", 1, loras=[{"name": "nowhere", "weight": 1.0}]),
            job("a dog", 2, loras=[{"name": "nowhere", "weight": 1.0}])]
    outcomes = engine.generate_batch([BatchMember(r) for r in jobs])
    assert all(o.images is None and "nowhere" in str(o.error) for o in outcomes)


def test_members_must_share_a_batch_key(engine) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="batch_key"):
        engine.generate_batch([BatchMember(JOBS[0]), BatchMember(job("x", 1, width=128))])
    assert engine.generate_batch([]) == []


def test_previews_at_the_interval_and_none_otherwise(tiny_model_dir: Path,
                                                    one_torch_thread: None) -> None:
    from generator.engine import Engine

    def run(interval: float) -> list[list[object]]:
        eng = Engine({"default": str(tiny_model_dir)}, device="cpu", preview_interval=interval)
        got: list[list[object]] = [[], []]
        def hear(index: int) -> Callable[[int, int, object], None]:
            return lambda step, total, preview: got[index].append(preview)

        members = [BatchMember(r, on_progress=hear(i)) for i, r in enumerate(JOBS[:2])]
        assert all(o.error is None for o in eng.generate_batch(members))
        solo: list[object] = []
        eng.generate(JOBS[0], on_progress=lambda s, t, p: solo.append(p))
        return [*got, solo]

    for previews in run(1e-9):  # due at every step
        assert len(previews) == 4
        assert all(isinstance(p, Image.Image) and max(p.size) <= 256 for p in previews)
    for previews in run(0.0) + run(3600.0):  # off, and never due
        assert previews == [None] * 4


def test_generated_image_png_is_lazy_and_still_constructible_from_bytes(engine) -> None:  # noqa: ANN001
    from generator.engine import GeneratedImage

    [result] = engine.generate(JOBS[0])
    assert result._png is None  # noqa: SLF001 - not encoded until someone asks
    assert result.png is result.png
    given = GeneratedImage(result.png, 1, 64, 64, "text", ("a note",))
    assert given.png == result.png and given.image is None and given.notes == ("a note",)
    with pytest.raises(ValueError, match="png or image"):
        GeneratedImage()


def test_measure_four_jobs_batched_against_one_by_one(engine) -> None:  # noqa: ANN001
    """Not an assertion of speed: prints what batching buys on this CPU (256 px, 4 steps)."""
    jobs = [job(f"a picture {i}", i, width=256, height=256) for i in range(4)]
    engine.generate(jobs[0])  # warm
    start = time.perf_counter()
    for request in jobs:
        engine.generate(request)
    alone = time.perf_counter() - start
    start = time.perf_counter()
    outcomes = engine.generate_batch([BatchMember(r) for r in jobs])
    batched = time.perf_counter() - start
    assert all(o.error is None for o in outcomes)
    print(f"\n4 jobs 256px 4 steps, 1 thread: one by one {alone:.2f}s, batched {batched:.2f}s,"
          f" speedup {alone / batched:.2f}x")
