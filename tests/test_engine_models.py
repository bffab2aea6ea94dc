"""The engine with LoRAs, embeddings, weighted prompts, ControlNet and several models, end to
end on the tiny model: what a user of /imagine sees, down to the PNG bytes.

Byte comparisons need a fixed number of torch threads (the result depends on it): every
engine here sets the same count.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from generator.engine import Engine
from generator.errors import GenerationError, ModelError
from generator.request import ImageRequest, LoraUse
from settings import Settings
from settings.errors import ImagineError
from tasks.core import metrics
from tasks.core.connection import redis_client
from tasks.core.delivery import AdapterRegistry, DeliveryContext
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.queue import JobQueue
from tasks.core.storage import Storage
from tasks.names import DELIVER_PROGRESS_TASK, PROGRESS_PENDING_KEY
from tasks.worker.celery_app import create_celery
from tasks.worker.runner import JobRunner
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.web_support import with_settings

THREADS = 2
WORDS = ("red", "blue", "green", "cat", "dog", "house", "tree", "sky", "boat", "moon")


def _engine(sources: dict[str, Path], **options: object) -> Engine:
    return Engine({name: str(path) for name, path in sources.items()}, device="cpu",
                  torch_threads=THREADS, **options)  # type: ignore[arg-type]


def _request(prompt: str = "a red fox", **fields: object) -> ImageRequest:
    values = {"prompt": prompt, "width": 64, "height": 64, "num_inference_steps": 2,
              "seed": 11, **fields}
    return ImageRequest(**values)  # type: ignore[arg-type]


def _png(engine: Engine, request: ImageRequest, **options: object) -> bytes:
    return engine.generate(request, **options)[0].png  # type: ignore[arg-type]


def _pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").tobytes()


def _pictures() -> dict[str, Image.Image]:
    """A source for image prompts and a control image with clear edges."""
    source = Image.new("RGB", (64, 64), (200, 120, 40))
    control = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(control).rectangle((16, 16, 48, 48), outline="white", width=3)
    return {"source": source, "control": control}


@pytest.fixture(scope="module")
def plain_png(tiny_model_dir: Path) -> bytes:
    """The plain job's image from an engine that never saw a LoRA."""
    return _png(_engine({"default": tiny_model_dir}), _request())


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tiny_lora_dir: Path, tiny_embeddings_dir: Path,
           tiny_controlnets: dict[str, Path]) -> Engine:
    return _engine({"default": tiny_model_dir}, lora_dir=tiny_lora_dir,
                   embeddings_dir=tiny_embeddings_dir,
                   controlnets={kind: str(path) for kind, path in tiny_controlnets.items()})


def test_a_lora_job_leaves_the_next_job_as_a_fresh_engine_draws_it(
        engine: Engine, plain_png: bytes) -> None:
    styled = _png(engine, _request(loras=(LoraUse(name="tiny-style", weight=1.0),)))
    assert styled != plain_png
    assert _png(engine, _request()) == plain_png
    # Weight 0 draws the plain image; only its PNG text names the LoRA.
    zero = _png(engine, _request(loras=(LoraUse(name="tiny-style", weight=0.0),)))
    assert _pixels(zero) == _pixels(plain_png) and b"tiny-style" in zero
    stronger = _png(engine, _request(loras=(LoraUse(name="tiny-style", weight=1.5),)))
    assert stronger not in (styled, plain_png)


def test_unknown_and_foreign_loras_fail_that_job_only(engine: Engine, plain_png: bytes) -> None:
    with pytest.raises(ImagineError, match="tiny-stlye") as unknown:
        engine.generate(_request(loras=(LoraUse(name="tiny-stlye"),)))
    assert "\n" not in unknown.value.message and "tiny-style" in unknown.value.message
    with pytest.raises(ImagineError, match="does not fit") as foreign:
        engine.generate(_request(loras=(LoraUse(name="sdxl-style"),)))
    assert "sdxl-style" in foreign.value.message
    assert _png(engine, _request()) == plain_png


def test_weighted_and_long_prompts(engine: Engine, plain_png: bytes) -> None:
    assert _png(engine, _request("a (red:1.6) fox")) != plain_png
    words = [WORDS[i % len(WORDS)] for i in range(120)]
    window = _png(engine, _request(" ".join(words[:70])))
    # The words past CLIP's 77 tokens count: chunked like A1111, not cut off.
    assert _png(engine, _request(" ".join(words))) != window


def test_an_embedding_word_draws_its_learned_vector(engine: Engine, tiny_model_dir: Path) -> None:
    bare = _engine({"default": tiny_model_dir})
    # In the prompt, and in --no (the common use: a negative embedding).
    for request in (_request("a tiny-token fox"), _request(negative_prompt="tiny-token")):
        assert _pixels(_png(engine, request)) != _pixels(_png(bare, request))


def test_controlnet_lora_and_image_prompt_together(engine: Engine) -> None:
    pictures = _pictures()
    image_prompt = _request().from_image("source", 64, 64)
    styled = image_prompt.model_copy(update={"loras": (LoraUse(name="tiny-style"),)})
    controlled = styled.model_copy(update={"control": "canny", "control_image": "control",
                                           "control_weight": 1.0})
    results = {name: engine.generate(request, load_image=pictures.__getitem__)[0]
               for name, request in (("image", image_prompt), ("styled", styled),
                                     ("controlled", controlled))}
    assert len({result.png for result in results.values()}) == 3
    assert (results["controlled"].width, results["controlled"].height) == (64, 64)
    drawn = engine.generate(_request(control="canny", control_image="control"),
                            load_image=pictures.__getitem__)[0]
    assert drawn.png != _png(engine, _request())


def test_an_unconfigured_controlnet_fails_clearly(tiny_model_dir: Path) -> None:
    bare = _engine({"default": tiny_model_dir})
    with pytest.raises(GenerationError, match="IMAGINE_CONTROLNETS"):
        bare.generate(_request(control="depth", control_image="control"),
                      load_image=_pictures().__getitem__)


def test_operations_draw_with_the_loras_too(engine: Engine) -> None:
    source = Image.new("RGB", (64, 64), (90, 160, 220))
    upscale = _request().upscaled("source", 5, 128, 128, 2.0)
    styled = upscale.model_copy(update={"loras": (LoraUse(name="tiny-style"),)})
    plain, lora = (engine.generate(r, load_image=lambda _: source)[0] for r in (upscale, styled))
    assert (lora.width, lora.height) == (128, 128) and lora.png != plain.png


def test_one_loaded_model_evicts_the_other_and_says_loading(
        tiny_model_dir: Path, tiny_single_file: Path, plain_png: bytes) -> None:
    engine = _engine({"default": tiny_model_dir, "single": tiny_single_file},
                     max_loaded_models=1)
    said: list[str] = []
    first = _png(engine, _request(), on_status=said.append)
    _png(engine, _request(), on_status=said.append)  # cached: nothing said
    _png(engine, _request(model="single"), on_status=said.append)
    assert engine.models.on_device == ("single",)
    again = _png(engine, _request(), on_status=said.append)
    assert said == ["loading model default…", "loading model single…", "loading model default…"]
    assert first == again == plain_png
    loads = engine.take_model_loads()
    assert [(load.model, load.origin) for load in loads] == [
        ("default", "disk"), ("single", "disk"), ("default", "disk")]
    with pytest.raises(ModelError, match="unknown model 'turbo'"):
        engine.generate(_request(model="turbo"), on_status=said.append)
    assert len(said) == 3 and engine.models.on_device == ("default",)



def test_the_runner_shows_the_load_as_the_job_phase_and_times_it(
        settings: Settings, tiny_model_dir: Path, tiny_lora_dir: Path, plain_png: bytes) -> None:
    client = redis_client(settings)
    queue = JobQueue(settings, client, create_celery(settings))
    storage = Storage(settings.images_dir)
    phases: list[str | None] = []

    def dispatch(task: str, job_id: str, options: dict[str, object]) -> None:
        # What the deliverer would read when it edits the chat's status message.
        if task == DELIVER_PROGRESS_TASK:
            phases.append(queue.jobs.get(job_id).phase)
            client.delete(PROGRESS_PENDING_KEY.format(job_id))  # delivered: the slot is free

    runner = JobRunner(settings, queue, storage,
                       _engine({"default": tiny_model_dir}, lora_dir=tiny_lora_dir), dispatch,
                       AdapterRegistry({"slack": lambda _: None}))  # type: ignore[dict-item, return-value]

    def run(request: ImageRequest) -> Job:
        job = queue.submit(Job(requester=Requester(platform="slack", user="u"),
                               request=request)).job
        runner.run(job.id)
        return queue.jobs.get(job.id)

    foreign = run(_request(loras=(LoraUse(name="sdxl-style"),)))
    assert foreign.status is JobStatus.failed and "does not fit" in (foreign.error or "")
    assert phases[0] == "loading model default…"
    plain = run(_request())  # the worker keeps serving, and draws as if nothing happened
    assert plain.status is JobStatus.done and plain.phase is None and phases[-1] is None
    assert storage.read(plain.images[0]) == plain_png
    exposition = metrics.render(client).decode()
    assert 'imagine_model_load_seconds_count{model="default",origin="disk"} 1.0' in exposition


def test_chat_status_lines_show_the_phase_until_the_first_step() -> None:
    from bots.discord.formatting import progress_text

    loading = Job(requester=Requester(platform="discord"), request=_request(),
                  status=JobStatus.running, phase="loading model turbo…")
    assert progress_text(loading, None).endswith("\nLoading model turbo…")
    drawing = loading.model_copy(update={"phase": None, "step": 1, "total_steps": 2})
    assert "step 1/2" in progress_text(drawing, None)


def test_slack_status_message_shows_the_phase(settings: Settings, slack: FakeSlack) -> None:
    from bots.slack.delivery import SlackDelivery

    slack_settings = with_settings(settings, slack_bot_token=BOT_TOKEN,
                                   slack_api_url=slack.api_url)
    posted = slack.handle("chat.postMessage", {"channel": "C1", "text": "queued"},
                          BOT_TOKEN, b"")[1]
    job = Job(requester=Requester(platform="slack", user="U1", channel="C1",
                                  message=posted["ts"], thread=posted["ts"], extra={"team": "T1"}),
              request=_request(), status=JobStatus.running, phase="loading model turbo…")
    SlackDelivery(slack_settings).deliver_progress(
        DeliveryContext(slack_settings, Storage(slack_settings.images_dir),
                        redis_client(slack_settings), job, "progress"), None)
    assert "loading model turbo…" in slack.of("chat.update")[0].params["text"]
