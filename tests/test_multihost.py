"""The multi-host layout, as separate processes that share only Redis and an S3 server
(moto), each with its own data folder as if on its own host: the web app, a deliver worker
and two generate workers. A job drawn on one generate worker is delivered (to a webhook) by
the deliver worker, which reads the image from the bucket, and served by the web app from
the bucket; a generate worker SIGKILLed mid-job (the whole host lost) leaves its job to the
other, which finishes it once."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tasks.core.jobs import Job, JobStatus, JobStore
from tasks.core.storage import Storage
from tasks.local.embedded_redis import free_port
from tests.fakes.outbound_target import Target, outbound_target
from tests.fixtures_redis import Process, process_env, process_starter, wait_for, worker_starter
from tests.fixtures_s3 import S3Server

TIMEOUT = 60.0
# Long enough on the tiny model (one torch thread) to be caught mid-draw.
SLOW_PROMPT = "a storm over the sea --size 256x256 --steps 30 --seed 11"


class Hosts:
    """`start(host, *args)`: `imagine ARGS` in its own data folder, sharing Redis and S3."""

    def __init__(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.base_env = base_env
        self.stops: list[Callable[[], None]] = []

    def starter(self, host: str) -> Callable[..., Process]:
        folder = self.tmp_path / host
        folder.mkdir()
        env = {**self.base_env, "IMAGINE_DATA_DIR": str(folder / "data"),
               "IMAGINE_STORAGE_DIR": str(folder / "images")}
        start, stop = process_starter(folder, env)
        self.stops.append(stop)
        return start

    def stop_all(self) -> None:
        for stop in reversed(self.stops):
            stop()


@pytest.fixture
def hosts(redis_url: str, tmp_path: Path, tiny_model_dir: Path, s3_env: dict[str, str]
          ) -> Iterator[tuple[Hosts, str]]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    env = process_env(redis_url, tmp_path, tiny_model_dir, **s3_env,
                      IMAGINE_WEB_PORT=str(port), IMAGINE_PUBLIC_URL=public,
                      IMAGINE_OUTBOUND_ALLOW="127.0.0.1", IMAGINE_MAX_JOBS_PER_USER="10")
    layout = Hosts(tmp_path, env)
    yield layout, public
    layout.stop_all()


def metric_samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{base}/metrics", timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def submit(base: str, prompt: str, webhook: str) -> str:
    created = requests.post(f"{base}/api/v1/jobs", json={"prompt": prompt, "webhook": webhook},
                            timeout=30)
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


def results(target: Target) -> dict[str, dict[str, object]]:
    """Job id → the result body the webhook received (once each, checked)."""
    bodies = [json.loads(hit.body) for hit in list(target.hits) if hit.method == "POST"]
    done = [body for body in bodies if body.get("event") == "result"]
    ids = [body["job"]["id"] for body in done]
    assert len(ids) == len(set(ids)), f"a result delivered twice: {ids}"
    return {body["job"]["id"]: body for body in done}


def test_web_deliver_and_two_generate_hosts_share_only_redis_and_s3(
        hosts: tuple[Hosts, str], s3_server: S3Server, s3_bucket: str, redis_url: str) -> None:
    layout, base = hosts
    start_web = layout.starter("web-host")
    web = start_web("web", "--loglevel", "warning", name="web")
    client = redis.Redis.from_url(redis_url)
    records = JobStore(client, 3600)
    deliver = worker_starter(layout.starter("io-host"), client)("deliver", timeout=TIMEOUT)
    start_a = worker_starter(layout.starter("gpu-host-a"), client)
    start_b = worker_starter(layout.starter("gpu-host-b"), client)
    workers = {process.pid: process for process in (start_a("generate", timeout=TIMEOUT),
                                                    start_b("generate", timeout=TIMEOUT))}
    wait_for(lambda: requests.get(f"{base}/healthz", timeout=5).status_code == 200, TIMEOUT,
             interval=0.2, message=f"the web app to answer\n{web.log()[-2000:]}")

    with outbound_target() as target:
        hook = f"{target.url}/ok"
        # 1. Drawn on one host, delivered by another, served by a third: all from S3.
        first = submit(base, "a lighthouse at dusk --seed 3", hook)
        wait_for(lambda: first in results(target), TIMEOUT, message="the webhook delivery")
        body = results(target)[first]
        image = body["images"][0]  # type: ignore[index]
        png = base64.b64decode(image["png_base64"])
        served = requests.get(image["url"], timeout=30)
        assert served.status_code == 200 and served.content == png
        assert image["url"].startswith(base)
        objects = s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
        assert [o["Key"] for o in objects] == [f"images/{image['name']}.png"]
        for folder in layout.tmp_path.glob("*-host*"):  # nothing written to any host's folder
            assert list(Storage(folder / "images").names()) == [], folder

        # 2. The host drawing a job dies (SIGKILL, its child too): the other finishes it.
        slow = submit(base, SLOW_PROMPT, hook)

        def drawing() -> str | None:
            job = records.find(slow)  # the worker is for operators: not in the API's JSON
            return job.worker if job and job.status is JobStatus.running and job.step >= 1 \
                else None

        holder = wait_for(drawing, TIMEOUT, interval=0.02, message="the slow job to start")
        pid = int(re.search(r"-(\d+)@", holder).group(1))  # type: ignore[union-attr]
        victim = workers.pop(pid)
        victim.kill_group()
        survivor = next(iter(workers.values()))
        wait_for(lambda: slow in results(target), TIMEOUT, message="the other host to finish")
        finished = Job.model_validate(results(target)[slow]["job"])
        assert finished.status is JobStatus.done and finished.worker != holder
        assert f"-{survivor.pid}@" in str(finished.worker)
        assert requests.get(results(target)[slow]["images"][0]["url"],  # type: ignore[index]
                            timeout=30).status_code == 200
        assert deliver.alive() and survivor.alive() and web.alive()
        results(target)  # each result delivered once

    # The web's /metrics saw both jobs finish on the generate hosts (written there).
    samples = metric_samples(base)
    assert samples[("imagine_images_total", (("platform", "webhook"),))] == 2
    assert samples[("imagine_model_generation_seconds_count", (("model", "default"),))] == 2
    assert samples[("imagine_queue_wait_seconds_count", ())] == 2
    assert samples[("imagine_workers", (("kind", "deliver"),))] == 1
