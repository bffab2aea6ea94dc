"""Image retention (tasks.core.retention, `imagine gc`): exactly the expired images nothing
live needs are deleted, with their prompt-URL cache entries, on a clock the test sets; a
deleted prompt URL is drawn again by the web app and a real worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from click.testing import CliRunner

from bots.cli import cli
from bots.web.cache import PromptCache
from generator.request import ImageRequest
from settings import Settings, load_settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStore, Requester
from tasks.core.retention import (
    DAY,
    GcBusy,
    ServedDays,
    collect,
    collect_locked,
    day_of,
)
from tasks.core.storage import Storage, open_storage
from tasks.local.up import services
from tasks.names import GC_LOCK_KEY, IMAGE_SERVED_KEY, JOB_KEY, URL_CACHE_KEY
from tasks.worker.celery_app import create_celery
from tasks.worker.gc_task import beat_schedule
from tests.fixtures_redis import Process, wait_for

NOW = 1_800_000_000.0  # the tests' "today"
TODAY = day_of(NOW)


def stored(settings: Settings, *labels: str) -> dict[str, str]:
    store = Storage(settings.images_dir)
    return {label: store.put(f"png of {label}".encode()) for label in labels}


def served(settings: Settings, days_ago: dict[str, int]) -> None:
    redis_client(settings).zadd(IMAGE_SERVED_KEY,
                                {name: TODAY - ago for name, ago in days_ago.items()})


def live_job(settings: Settings, **request: object) -> Job:
    job = Job(requester=Requester(platform="slack", user="U1"),
              request=ImageRequest(prompt="a cat", **request))  # type: ignore[arg-type]
    return JobStore(redis_client(settings), 3600).save(job)


@pytest.fixture
def scene(settings: Settings) -> dict[str, str]:
    """Old, recent, never-recorded, live and cached images, as gc meets them."""
    names = stored(settings, "old", "recent", "unrecorded", "job image", "source",
                   "mask", "cached", "recalled")
    ages = {"old": 30, "recent": 2, "job image": 30, "source": 30, "mask": 30, "cached": 9,
            "recalled": 30}
    served(settings, {names[label]: ago for label, ago in ages.items()})
    client = redis_client(settings)
    job = live_job(settings, mode="inpaint", source_image=names["source"],
                   mask_image=names["mask"], strength=0.5)
    JobStore(client, 3600).update(job.id, lambda j: j.model_copy(
        update={"images": [names["job image"]]}))
    client.set("imagine:recall:r1", json.dumps({"request": {"source_image": names["recalled"]}}))
    cache = PromptCache(client, 60)
    cache.remember("key-cached", "job-c", names["cached"])
    cache.remember("key-recent", "job-r", names["recent"])
    return names


def test_gc_deletes_exactly_the_expired_images_nothing_live_needs(
        settings: Settings, scene: dict[str, str]) -> None:
    client, store = redis_client(settings), Storage(settings.images_dir)
    dry = collect(client, store, 7, now=NOW, dry_run=True)
    assert sorted(dry.expired) == sorted([scene["old"], scene["cached"]])
    assert dry.cache_entries == 1 and dry.images == 8 and dry.live == 4
    assert all(store.exists(name) for name in scene.values())  # a dry run deletes nothing
    assert client.zscore(IMAGE_SERVED_KEY, scene["unrecorded"]) is None

    report = collect(client, store, 7, now=NOW)
    assert sorted(report.expired) == sorted([scene["old"], scene["cached"]])
    gone = {label for label, name in scene.items() if not store.exists(name)}
    assert gone == {"old", "cached"}
    assert client.get(URL_CACHE_KEY.format("key-cached")) is None
    assert client.get(URL_CACHE_KEY.format("key-recent")) is not None
    assert "deleted 2 of 8 images" in report.summary()
    # Live images count as referenced today; an unrecorded one starts its clock today.
    for label in ("job image", "source", "mask", "recalled", "unrecorded"):
        assert client.zscore(IMAGE_SERVED_KEY, scene[label]) == TODAY, label
    assert client.zscore(IMAGE_SERVED_KEY, scene["old"]) is None

    # Nine days on, nothing was served: the unrecorded image expires, live ones stay.
    later = collect(client, store, 7, now=NOW + 9 * DAY)
    assert sorted(later.expired) == sorted([scene["unrecorded"], scene["recent"]])
    assert store.exists(scene["job image"]) and store.exists(scene["source"])
    # Once its job record expired, a live job's image goes the same way.
    client.delete(*client.keys(JOB_KEY.format("*")), "imagine:recall:r1")
    last = collect(client, store, 7, now=NOW + 17 * DAY)
    assert sorted(last.expired) == sorted(scene[label] for label in
                                          ("job image", "source", "mask", "recalled"))
    assert list(store.names()) == [] and client.zcard(IMAGE_SERVED_KEY) == 0


def test_served_days_are_written_once_a_day_per_image(settings: Settings) -> None:
    client = redis_client(settings)
    store = Storage(settings.images_dir)
    name = store.put(b"served png")
    clock = [NOW - 20 * DAY]
    days = ServedDays(client, interval=3600, clock=lambda: clock[0])
    for _ in range(1000):
        days.note(name)
    assert days._pending == {name: TODAY - 20}  # one write queued for a thousand hits
    days.flush()
    assert client.zscore(IMAGE_SERVED_KEY, name) == TODAY - 20
    days.note(name)
    assert days._pending == {}  # already recorded today
    assert collect(client, store, 7, now=NOW, dry_run=True).expired == [name]

    clock[0] = NOW - DAY  # served again yesterday: it stays
    days.note(name)
    days.flush()
    assert client.zscore(IMAGE_SERVED_KEY, name) == TODAY - 1
    # A process that still remembers an older day never moves the record back.
    ServedDays(client, clock=lambda: NOW - 5 * DAY).note(name)
    older = ServedDays(client, clock=lambda: NOW - 5 * DAY)
    older.note(name)
    older.flush()
    assert client.zscore(IMAGE_SERVED_KEY, name) == TODAY - 1
    assert collect(client, store, 7, now=NOW).expired == []


def test_one_gc_at_a_time(settings: Settings) -> None:
    client = redis_client(settings)
    store = Storage(settings.images_dir)
    client.set(GC_LOCK_KEY, "someone else", ex=60)
    with pytest.raises(GcBusy, match="Another image collection is running"):
        collect_locked(client, store, 7, now=NOW)
    assert collect_locked(client, store, 7, now=NOW, dry_run=True).expired == []
    client.delete(GC_LOCK_KEY)
    collect_locked(client, store, 7, now=NOW)
    assert client.get(GC_LOCK_KEY) is None  # released after the run


def test_imagine_gc_without_retention_says_so_and_exits_0(settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["gc"])
    assert result.exit_code == 0, result.output
    assert "IMAGINE_IMAGE_RETENTION is not set" in result.output


def test_imagine_gc_dry_run_lists_and_keeps(settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_IMAGE_RETENTION", "7")
    names = stored(settings, "a", "b")
    old_day = day_of(time.time()) - 8
    redis_client(settings).zadd(IMAGE_SERVED_KEY, {names["a"]: old_day, names["b"]: old_day + 5})
    dry = CliRunner().invoke(cli, ["gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines()[0] == names["a"]
    assert "would delete 1 of 2 images" in dry.output
    assert Storage(settings.images_dir).exists(names["a"])
    real = CliRunner().invoke(cli, ["gc"])
    assert real.exit_code == 0 and "deleted 1 of 2 images" in real.output
    assert not Storage(settings.images_dir).exists(names["a"])


def test_gc_is_scheduled_by_up_and_by_beat(settings: Settings) -> None:
    names = [s.name for s in services(settings, "redis://x", "info", ["imagine"],
                                      count_gpus=lambda: 0)]
    assert "gc" not in names  # retention unset: nothing to schedule
    kept = settings.model_copy(update={"image_retention": 30.0})
    gc = next(s for s in services(kept, "redis://x", "info", ["imagine"], count_gpus=lambda: 0)
              if s.name == "gc")
    assert gc.argv[:3] == ["imagine", "gc", "--every"]
    entry = beat_schedule()["imagine-gc"]
    assert entry["task"] == "imagine.gc" and entry["options"]["queue"] == "deliver"


def test_a_deleted_prompt_url_is_drawn_again_the_same(
        serve_app: Callable[..., str], start_worker: Callable[..., Process],
        settings: Settings) -> None:
    """Served, expired (its job record gone too), collected, then asked for again."""
    start_worker("generate")
    base = serve_app(image_retention=7.0)
    url = f"{base}/?prompt=a+lighthouse+at+dusk&wait=60"
    first = requests.get(url, timeout=90)
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/png"
    name = first.headers["X-Imagine-Image"]
    client, store = redis_client(settings), Storage(settings.images_dir)
    wait_for(lambda: client.zscore(IMAGE_SERVED_KEY, name) is not None, 10,
             message="the web app to record the image as served")
    client.delete(*client.keys(JOB_KEY.format("*")))  # its job record expired

    report = collect(client, store, 7, now=time.time() + 30 * DAY)
    assert report.expired == [name] and report.cache_entries == 1
    assert not store.exists(name)
    assert client.keys(URL_CACHE_KEY.format("*")) == []

    again = requests.get(url, timeout=90)
    assert again.status_code == 200, again.text[:200]
    assert again.headers["X-Imagine-Image"] == name and again.content == first.content
    assert store.exists(name)


def test_gc_collects_a_bucket_the_same(settings: Settings, s3_env: dict[str, str]) -> None:
    """The same rules on S3 (moto): only the expired, unreferenced object goes."""
    store = open_storage(load_settings())
    client = redis_client(settings)
    old, kept = store.put(b"old png in a bucket"), store.put(b"recent png in a bucket")
    client.zadd(IMAGE_SERVED_KEY, {old: TODAY - 30, kept: TODAY - 1})
    report = collect(client, store, 7, now=NOW)
    assert report.expired == [old] and sorted(store.names()) == [kept]
    assert not store.exists(old) and store.exists(kept)


def test_a_deliver_worker_runs_the_scheduled_gc(
        settings: Settings, start_worker: Callable[..., Process]) -> None:
    """What beat sends (imagine.gc on the deliver queue), a real deliver worker runs."""
    start_worker("deliver", env={"IMAGINE_IMAGE_RETENTION": "7"})
    names = stored(settings, "stale", "fresh")
    today = day_of(time.time())
    redis_client(settings).zadd(IMAGE_SERVED_KEY, {names["stale"]: today - 8,
                                                   names["fresh"]: today})
    entry = beat_schedule()["imagine-gc"]
    create_celery(settings).send_task(entry["task"], **entry["options"])
    store = Storage(settings.images_dir)
    wait_for(lambda: not store.exists(names["stale"]), 30, message="the gc task to run")
    assert store.exists(names["fresh"])


def test_an_image_a_job_names_while_gc_lists_the_store_stays(settings: Settings) -> None:
    """Listing a large bucket takes long; a variation submitted meanwhile keeps its source."""
    names = stored(settings, "source", "other")
    served(settings, {names["source"]: 30, names["other"]: 30})

    class ListedSlowly(Storage):  # the real folder; a user submits while it is listed
        def names(self) -> Iterator[str]:
            yield from super().names()
            live_job(settings, mode="img2img", source_image=names["source"], strength=0.5)

    report = collect(redis_client(settings), ListedSlowly(settings.images_dir), 7, now=NOW)
    assert report.expired == [names["other"]]
    assert Storage(settings.images_dir).exists(names["source"])
