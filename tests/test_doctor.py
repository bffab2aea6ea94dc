"""`imagine doctor` against real Redis, the tiny model, a live web app and the chat fakes:
a good setup passes; each broken part fails with its own fix; --json has the documented
shape. One run is a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bots.cli import cli
from bots.doctor.chat import manifest_scopes
from tasks.local.embedded_redis import free_port
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

pytestmark = pytest.mark.socket_mode  # the fake Slack answers apps.connections.open


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        fake.commands["global"] = [{"name": "imagine", "type": 1, "id": "1"},
                                   {"name": "models", "type": 1, "id": "2"}]
        yield fake


@pytest.fixture
def good(imagine_env: dict[str, str], slack: FakeSlack, discord: FakeDiscord,
         serve_app: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A working deployment's environment (also applied to this process)."""
    slack.scopes = tuple(sorted(manifest_scopes()))
    env = {**imagine_env, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": slack.app_token,
           "SLACK_API_URL": slack.api_url, **discord.env, "IMAGINE_PUBLIC_URL": serve_app()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def doctor(*args: str, **env: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run `imagine doctor --json ARGS` in this process; the checks by name."""
    result = CliRunner().invoke(cli, ["doctor", "--json", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    checks = json.loads(result.stdout)["checks"]
    return result.exit_code, {check["name"]: check for check in checks}


def failures(checks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: check for name, check in checks.items() if check["status"] == "fail"}


def test_a_good_setup_passes_as_a_real_subprocess(good: dict[str, str], tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "bots.cli", "doctor", "--json"],
                         env={**os.environ, **good}, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    checks = json.loads(run.stdout)["checks"]
    assert all(set(check) == {"name", "status", "detail", "fix"} for check in checks)
    by_name = {check["name"]: check for check in checks}
    assert {c["status"] for c in checks} <= {"ok", "warn", "skipped"}
    for name in ("python", "torch", "model default", "redis", "data folder", "image storage",
                 "slack auth", "slack scopes", "slack mode", "discord token",
                 "discord commands", "public url"):
        assert by_name[name]["status"] == "ok", by_name[name]
    assert by_name["gpu"]["status"] == "warn"  # IMAGINE_DEVICE=cpu: no GPU is a warning
    assert by_name["web secrets"]["status"] == "skipped"  # loopback only
    assert "/imagine" in by_name["discord commands"]["detail"]


def test_human_output_has_one_line_per_check_and_a_fix_under_failures(good: dict[str, str]
                                                                      ) -> None:
    result = CliRunner().invoke(cli, ["doctor"], env={"SLACK_BOT_TOKEN": "xoxb-wrong"})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    failed = [i for i, line in enumerate(lines) if line.startswith("FAIL")]
    assert len(failed) == 1 and "slack auth" in lines[failed[0]]
    assert lines[failed[0] + 1].strip().startswith("fix: copy the Bot User OAuth Token")
    assert lines[-1].endswith("1 failed, 1 warnings")


def test_each_broken_part_fails_with_its_own_fix(good: dict[str, str]) -> None:
    fixes = {}
    cases = {
        "slack auth": {"SLACK_BOT_TOKEN": "xoxb-wrong"},
        "slack mode": {"SLACK_APP_TOKEN": BOT_TOKEN},  # a bot token used as the app token
        "model default": {"IMAGINE_MODEL": str(Path(good["IMAGINE_DATA_DIR"]) / "no-model")},
        "redis": {"IMAGINE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    }
    for name, env in cases.items():
        code, checks = doctor(**env)
        assert code == 1
        assert list(failures(checks)) == [name], checks
        fixes[name] = checks[name]["fix"]
    code, checks = doctor("--min-free", "1000000")  # more than any disk here has free
    assert code == 1
    assert set(failures(checks)) == {"data folder", "image storage"}
    fixes["storage"] = checks["image storage"]["fix"]
    assert "below --min-free 1e+06 GB" in checks["image storage"]["detail"]
    assert len(set(fixes.values())) == len(fixes)  # each its own fix
    assert "(xapp-…) in SLACK_APP_TOKEN" in fixes["slack mode"]
    assert "IMAGINE_MODEL" in fixes["model default"]
    assert "IMAGINE_REDIS_URL" in fixes["redis"]


def test_scopes_commands_token_public_url_and_secrets(good: dict[str, str], slack: FakeSlack,
                                                      discord: FakeDiscord) -> None:
    slack.scopes = tuple(sorted(manifest_scopes() - {"users:read", "files:read"}))
    discord.commands["global"] = []
    code, checks = doctor(IMAGINE_PUBLIC_URL=f"http://127.0.0.1:{free_port()}",
                          IMAGINE_WEB_HOST="0.0.0.0", IMAGINE_URL_SECRET="s" * 32)
    assert code == 1
    assert set(failures(checks)) == {"slack scopes", "discord commands", "public url",
                                     "web secrets"}
    assert "files:read, users:read" in checks["slack scopes"]["detail"]
    assert "imagine discord --sync" in checks["discord commands"]["fix"]
    assert "IMAGINE_API_TOKEN" in checks["web secrets"]["detail"]
    assert "IMAGINE_URL_SECRET" not in checks["web secrets"]["detail"]
    slack.scopes = tuple(manifest_scopes())
    discord.commands["global"] = [{"name": "imagine"}]
    code, checks = doctor(DISCORD_TOKEN="wrong")
    assert list(failures(checks)) == ["discord token"]
    assert "Reset Token" in checks["discord token"]["fix"]


def test_unconfigured_parts_are_skipped(imagine_env: dict[str, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGINE_PUBLIC_URL")
    code, checks = doctor()
    assert code == 0
    for name in ("slack", "discord", "public url", "web secrets"):
        assert checks[name]["status"] == "skipped"

