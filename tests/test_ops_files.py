"""The operations files checked against the real thing: every query of the Grafana dashboard
and of the Prometheus alerts names a metric the web app's /metrics exports (scraped over
HTTP), and docker-compose.yml's services, profiles and variables agree with the CLI, the
queues and the README. No Docker daemon: the compose file is read, not run.

GPU series exist only where a GPU worker publishes them: on this CPU host the test scrapes
once without them (and asserts they are absent, not silently missing), then publishes a
snapshot exactly as a GPU worker's reporter does and scrapes again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bots.cli import cli
from settings import Settings
from tasks.core import metrics, ops_metrics
from tasks.core.connection import redis_client
from tasks.core.jobs import JobStatus
from tasks.names import QUEUES
from tasks.worker import gpu_stats
from tasks.worker.heartbeat import Heartbeat

ROOT = Path(__file__).resolve().parent.parent
METRIC = re.compile(r"\b(imagine_[a-z0-9_]+)")
GPU_WORKER = "generate-gpu0-7@gpu-host"


def dashboard() -> dict[str, Any]:
    return json.loads((ROOT / "ops" / "grafana-dashboard.json").read_text())


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((ROOT / "ops" / "prometheus-alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_queries() -> dict[str, list[str]]:
    """Panel title → its queries."""
    return {panel["title"]: [target["expr"] for target in panel["targets"]]
            for panel in dashboard()["panels"]}


def scrape(base: str) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Sample name → the label sets it has, from the live /metrics."""
    response = requests.get(f"{base}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    samples: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).add(tuple(sorted(sample.labels.items())))
    return samples


def some_activity(settings: Settings) -> None:
    """What a running deployment has done: jobs finished on two platforms, a retried
    delivery, a cache hit, a generate and a deliver worker alive (real heartbeats)."""
    client = redis_client(settings)
    for platform in ("slack", "web"):
        metrics.record_job_finished(client, platform, JobStatus.done.value, 2.5)
        ops_metrics.record_finished(client, platform, model="default", images=2, waited=4.0,
                                    seconds=2.5)
    metrics.record_job_finished(client, "discord", JobStatus.failed.value, None)
    metrics.record_delivery_retry(client, "slack", "transient")
    client.hincrby("imagine:metrics:cache", "hit", 3)
    Heartbeat(client, GPU_WORKER, ["generate"]).beat()
    Heartbeat(client, "deliver-8@io-host", ["deliver"]).beat()


def missing(queries: list[str], exported: set[str]) -> set[str]:
    return {name for query in queries for name in METRIC.findall(query)} - exported


def test_every_dashboard_and_alert_query_names_an_exported_metric(
        serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app()
    some_activity(settings)
    queries = [q for qs in dashboard_queries().values() for q in qs]
    alerts = [rule["expr"] for rule in alert_rules()]

    # A CPU-only deployment: everything but the GPU series, and those are absent.
    cpu_host = scrape(base)
    gpu_names = {name for name in ops_metrics.GPU_METRICS}
    assert not gpu_names & set(cpu_host)
    assert missing(queries + alerts, set(cpu_host)) == gpu_names
    assert gpu_stats.gpu_snapshot() == []  # this host has no GPU: its workers publish none
    assert gpu_stats.start_reporter(redis_client(settings), GPU_WORKER) is None

    # A GPU worker's reporter publishes; then every query has its metric.
    gpu_stats.publish(redis_client(settings), GPU_WORKER, [gpu_stats.GpuStats(
        gpu="0", name="NVIDIA H200", allocated=3 << 30, reserved=4 << 30,
        max_allocated=5 << 30, used=6 << 30, total=141 << 30, utilization=0.75)])
    gpu_host = scrape(base)
    assert missing(queries + alerts, set(gpu_host)) == set()
    labels = dict(next(iter(gpu_host["imagine_gpu_utilization_ratio"])))
    assert labels == {"worker": GPU_WORKER, "gpu": "0", "device": "NVIDIA H200"}

    # The label values the alerts filter on are ones the exporter writes.
    assert (("kind", "generate"),) in gpu_host["imagine_workers"]
    assert (("kind", "deliver"),) in gpu_host["imagine_workers"]
    assert (("platform", "slack"), ("reason", "transient")) in \
        gpu_host["imagine_delivery_retries_total"]
    assert (("outcome", "failed"), ("platform", "discord")) in gpu_host["imagine_jobs_total"]
    assert (("model", "default"),) in gpu_host["imagine_model_generation_seconds_count"]
    assert (("platform", "web"),) in gpu_host["imagine_images_total"]


def test_the_dashboard_covers_what_operators_watch() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    titles = set(dashboard_queries())
    for wanted in ("Queue depth", "Queue wait", "Generation seconds by model",
                   "Images per minute by platform", "Delivery retries per minute",
                   "Prompt-URL cache hit rate", "GPU memory"):
        assert wanted in titles
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(target["refId"] for target in panel["targets"])
    queries = dashboard_queries()
    assert any("model" in q for q in queries["Generation seconds by model"])
    assert any("platform" in q for q in queries["Images per minute by platform"])


def test_the_alert_rules_are_complete() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert {"ImagineNoGenerateWorker", "ImagineQueueWaitHigh",
            "ImagineDeliveryFailures"} <= set(rules)
    for name, rule in rules.items():
        assert rule["expr"].strip() and rule["for"], name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"], name


# --- docker-compose.yml ---------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_run_real_commands_on_real_queues() -> None:
    services = compose()["services"]
    ours = {name: svc for name, svc in services.items() if "build" in svc}
    assert {"web", "gpu-worker", "deliver-worker", "beat"} <= set(ours)
    for name, service in ours.items():
        command = service["command"]
        assert command[0] in cli.commands, (name, command)
        if command[0] == "worker":
            queue = command[command.index("--queues") + 1]
            assert queue in QUEUES, (name, queue)
    assert "devices" in str(ours["gpu-worker"].get("deploy"))  # one GPU per generate worker
    assert ours["beat"].get("deploy", {}).get("replicas", 1) == 1  # exactly one beat
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
            # A service in a profile may depend only on ones that run with it.
            assert set(services[dependency].get("profiles", [])) <= set(
                service.get("profiles", [])), (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose()["volumes"], (name, source)


def test_compose_profiles_s3_and_flower_agree_with_the_settings() -> None:
    data = compose()
    services = data["services"]
    profiles = {name: svc.get("profiles", []) for name, svc in services.items()}
    assert profiles["minio"] == profiles["minio-bucket"] == ["s3"]
    assert profiles["flower"] == ["flower"]
    assert not profiles["web"] and not profiles["beat"]
    # MinIO's root user is the AWS_* pair boto3 reads in the imagine services (from .env).
    for name in ("minio", "minio-bucket"):
        env = services[name]["environment"]
        assert env["MINIO_ROOT_USER"].startswith("${AWS_ACCESS_KEY_ID:-")
        assert env["MINIO_ROOT_PASSWORD"].startswith("${AWS_SECRET_ACCESS_KEY:-")
    text = (ROOT / "docker-compose.yml").read_text()
    endpoint = re.search(r"IMAGINE_S3_ENDPOINT=(http://minio:\d+)", text)
    storage = re.search(r"IMAGINE_STORAGE_URL=s3://([a-z0-9-]+)", text)
    assert endpoint and storage
    bucket_job = " ".join(services["minio-bucket"]["command"])
    assert f"alias set local {endpoint.group(1)} " in bucket_job
    assert services["minio-bucket"]["environment"]["IMAGINE_S3_BUCKET"] == \
        f"${{IMAGINE_S3_BUCKET:-{storage.group(1)}}}"
    # Flower reads the same broker as the workers and turns task events on.
    flower = services["flower"]["environment"]
    assert flower["CELERY_BROKER_URL"] == services["web"]["environment"]["IMAGINE_REDIS_URL"]
    assert flower["FLOWER_ENABLE_EVENTS"] == "true"
    assert all(port.startswith("127.0.0.1:") for port in services["flower"]["ports"])


def test_readme_shows_the_deployment_layout_and_the_ops_files() -> None:
    readme = (ROOT / "README.md").read_text()
    section = " ".join(readme[readme.index("### Beyond one machine"):].split())
    for words in ("--profile s3", "--profile flower", "stateless", "one per GPU",
                  "imagine gc", "IMAGINE_IMAGE_RETENTION", "ops/grafana-dashboard.json",
                  "ops/prometheus-alerts.yml", "only on hosts with a GPU", "nvidia-ml-py"):
        assert words in section, words
