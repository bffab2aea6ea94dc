"""The start plan of `imagine up` with several GPUs (the count injected: no machine here has
several), and `imagine worker --gpu N` / `--models` refusing what cannot run."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bots.cli import cli
from settings import Settings
from tasks.local.gpus import generate_workers
from tasks.local.up import services
from tasks.worker.main import worker_argv, worker_hostname

COMMAND = ("imagine",)


def never_counted() -> int:
    raise AssertionError("GPUs counted although IMAGINE_DEVICE chose the device")


def plan(settings: Settings, gpus: int | None) -> dict[str, list[str]]:
    counter = never_counted if gpus is None else (lambda: gpus)
    parts = services(settings, "redis://127.0.0.1:1/0", "info", COMMAND, counter)
    return {part.name: list(part.argv) for part in parts}


def test_one_generate_worker_per_visible_gpu(settings: Settings) -> None:
    auto = settings.model_copy(update={"device": "auto"})
    parts = plan(auto, 4)
    generate = {name: argv for name, argv in parts.items() if name.startswith("generate")}
    assert generate == {
        f"generate worker gpu{n}": ["imagine", "worker", "--queues", "generate", "--gpu", str(n),
                                    "--loglevel", "info"]
        for n in range(4)
    }
    assert "deliver worker" in parts and "web" in parts
    assert [w.gpu for w in generate_workers("cuda", lambda: 4)] == [0, 1, 2, 3]


@pytest.mark.parametrize(("device", "gpus"), [("auto", 0), ("cpu", None), ("cuda:1", None),
                                              ("mps", None)])
def test_one_generate_worker_without_gpus_or_with_a_chosen_device(
        settings: Settings, device: str, gpus: int | None) -> None:
    parts = plan(settings.model_copy(update={"device": device}), gpus)
    generate = [argv for name, argv in parts.items() if name.startswith("generate")]
    assert generate == [["imagine", "worker", "--queues", "generate", "--loglevel", "info"]]


def test_each_gpu_worker_has_its_own_node_name_and_the_queues_of_its_models() -> None:
    names = {worker_hostname("generate", f"cuda:{n}") for n in range(4)}
    assert len(names) == 4 and all(name.startswith("generate-gpu") for name in names)
    assert worker_hostname("generate", "cuda:2").startswith("generate-gpu2-")
    assert worker_hostname("deliver", "cuda:2").startswith("deliver-")
    argv = worker_argv("generate", None, "info", models=("default", "turbo"), hostname="g@h")
    assert argv[argv.index("--queues") + 1] == "generate,generate.turbo"
    assert argv[argv.index("--concurrency") + 1] == "1"


def test_worker_refuses_a_gpu_it_does_not_have_and_unknown_models(
        imagine_env: dict[str, str]) -> None:
    runner = CliRunner()
    answer = runner.invoke(cli, ["worker", "--gpu", "7"])
    assert answer.exit_code == 1, answer.output
    assert "IMAGINE_DEVICE=cuda:7 names" in answer.output
    assert "Traceback" not in answer.output

    answer = runner.invoke(cli, ["worker", "--models", "default,nope"])
    assert answer.exit_code == 1, answer.output
    assert "not in the catalogue (nope): the known models are default" in answer.output
