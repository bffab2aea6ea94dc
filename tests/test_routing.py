"""Model-aware routing on a real Redis: each job's Celery message lands in its model's queue,
positions count only the jobs the workers able to take it could take first, and the ETA
divides by the live workers serving its model (their heartbeats, written by the real
Heartbeat class). No worker runs here: the messages stay in Redis to be looked at."""

from __future__ import annotations

import pytest
import redis

from generator.loading import resolve_device
from settings import Settings
from settings.errors import ConfigError
from tasks.core.jobs import JobStatus
from tasks.core.queue import JobQueue, format_wait
from tasks.core.routing import served_models, worker_queues
from tasks.worker.heartbeat import Heartbeat
from tests.test_queue import make_job, make_queue

MODELS = {"other": "/models/other", "turbo": "/models/turbo"}


@pytest.fixture
def routed(imagine_env: dict[str, str]) -> Settings:
    return Settings(_env_file=None, models=MODELS, max_jobs_per_user=20)  # type: ignore[call-arg,arg-type]


def beat(queue: JobQueue, name: str, models: list[str]) -> Heartbeat:
    heartbeat = Heartbeat(queue.redis, f"{name}@test", worker_queues(models), models=models)
    heartbeat.beat()
    return heartbeat


def waiting_messages(client: redis.Redis, celery_queue: str) -> int:
    return int(client.llen(celery_queue))  # kombu keeps a Redis queue as a list of that name


def submit_mixed(queue: JobQueue) -> dict[str, str]:
    """d1, o1, d2, o2 in this order: ids by label."""
    ids = {}
    for label in ("d1", "o1", "d2", "o2"):
        model = "default" if label.startswith("d") else "other"
        ids[label] = queue.submit(make_job(user=label, model=model)).job_id
    return ids


def test_each_job_is_sent_to_its_models_queue(routed: Settings) -> None:
    queue = make_queue(routed)
    submit_mixed(queue)
    assert waiting_messages(queue.redis, "generate") == 2
    assert waiting_messages(queue.redis, "generate.other") == 2
    assert waiting_messages(queue.redis, "generate.turbo") == 0
    # A name the catalogue does not know goes where a worker fails it with a clear error.
    queue.submit(make_job(model="missing"))
    assert waiting_messages(queue.redis, "generate") == 3


def test_positions_count_only_jobs_the_serving_workers_could_take_first(
        routed: Settings) -> None:
    queue = make_queue(routed)
    ids = submit_mixed(queue)

    def positions() -> list[int | None]:
        return [queue.position(ids[label]) for label in ("d1", "o1", "d2", "o2")]

    # No worker yet: each model's line on its own.
    assert positions() == [1, 1, 2, 2]
    assert queue.next_position("other") == 3
    # Disjoint workers: still two lines.
    a, b = beat(queue, "a", ["default"]), beat(queue, "b", ["other"])
    assert positions() == [1, 1, 2, 2]
    # B also serves default: the default jobs may wait behind other's, and the reverse.
    b.stop()
    beat(queue, "b2", ["default", "other"])
    assert positions() == [1, 2, 3, 4]
    assert queue.next_position("other") == queue.next_position("default") == 5
    # A job that starts leaves every line it was counted in.
    queue.mark_started(ids["d1"])
    assert positions() == [None, 1, 2, 3]
    queue.cancel(ids["o1"])
    assert positions() == [None, None, 1, 2]
    a.stop()


def test_the_eta_divides_by_the_workers_serving_the_model_and_never_pretends(
        routed: Settings) -> None:
    queue = make_queue(routed)
    average = queue.average_duration()
    # No worker at all: as if one were about to start (as before routing).
    assert queue.eta(3, "other") == pytest.approx(average * 3)
    beat(queue, "a", ["default"])
    beat(queue, "b", ["default", "other"])
    assert queue.eta(3, "default") == pytest.approx(average * (2 / 2 + 1))
    assert queue.eta(3, "other") == pytest.approx(average * 3)
    # Workers run, none serves turbo: no number would be true.
    assert queue.eta(1, "turbo") is None
    assert format_wait(None) == "an unknown time (no running worker serves this model)"
    assert queue.estimate_wait(1, "turbo") == pytest.approx(average)  # Retry-After's number
    submitted = queue.submit(make_job(model="turbo"))
    assert submitted.position == 1 and submitted.eta_seconds is None
    # Every generate worker counts as one, whichever models it serves.
    assert len(queue.alive_workers("generate")) == 2
    assert [w["models"] for w in queue.alive_workers("generate")] in (
        [["default"], ["default", "other"]], [["default", "other"], ["default"]])


def test_requeue_resends_to_the_models_queue(routed: Settings) -> None:
    queue = make_queue(routed)
    job_id = queue.submit(make_job(model="other")).job_id
    queue.redis.delete("generate.other")  # as if a worker took the message
    queue.mark_started(job_id)
    queue.jobs.update(job_id, lambda j: j.model_copy(update={"status": JobStatus.running}))
    assert queue.position(job_id) is None

    assert queue.requeue(job_id).status is JobStatus.queued
    assert waiting_messages(queue.redis, "generate.other") == 1
    assert waiting_messages(queue.redis, "generate") == 0
    assert queue.position(job_id) == 1


def test_served_models_default_to_the_catalogue_and_refuse_unknown_names(
        routed: Settings) -> None:
    assert served_models(routed) == ("default", "other", "turbo")
    picked = routed.model_copy(update={"worker_models": ("turbo", "default")})
    assert served_models(picked) == ("turbo", "default")
    assert worker_queues(served_models(picked)) == ["generate.turbo", "generate"]
    wrong = routed.model_copy(update={"worker_models": ("default", "turob")})
    with pytest.raises(ConfigError) as caught:
        served_models(wrong)
    assert "turob" in caught.value.message
    assert "the known models are default, other, turbo" in caught.value.message


def test_worker_models_are_read_as_a_comma_list(imagine_env: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_WORKER_MODELS", " turbo, default,,turbo ")
    assert Settings(_env_file=None).worker_models == ("turbo", "default")  # type: ignore[call-arg]


def test_a_gpu_index_must_exist() -> None:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError) as caught:
        resolve_device(f"cuda:{count}")
    assert f"IMAGINE_DEVICE=cuda:{count} but torch sees {count} CUDA GPU" in caught.value.message
    if count:
        assert resolve_device(f"cuda:{count - 1}") == f"cuda:{count - 1}"
