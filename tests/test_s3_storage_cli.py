"""`imagine storage migrate` and `imagine storage check` against moto's S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bots.cli import cli
from settings import Settings
from tasks.core.s3_storage import S3Storage
from tasks.core.storage import Storage, open_storage


@pytest.fixture
def bucket(clean_env: None, s3_env: dict[str, str]) -> S3Storage:
    store = open_storage(Settings(_env_file=None))
    assert isinstance(store, S3Storage)
    return store


def test_migrate_copies_a_folder_once_and_says_how_many(bucket: S3Storage,
                                                        tmp_path: Path) -> None:
    folder = Storage(tmp_path / "images")
    names = {folder.put(f"image {i}".encode()) for i in range(5)}
    bucket.put(b"image 0")  # one is already there
    damaged = folder.put(b"will be damaged")
    folder.path(damaged).write_bytes(b"not what the name says")
    (folder.path(damaged).parent / "x.tmp").write_bytes(b"a write in progress")

    runner = CliRunner()
    first = runner.invoke(cli, ["storage", "migrate", "--from", str(folder.directory)])
    assert first.exit_code == 0, first.output
    assert "copied 4, already there 1, skipped 1" in first.output
    assert set(bucket.names()) == names
    assert all(bucket.read(name) == folder.read(name) for name in names)

    again = runner.invoke(cli, ["storage", "migrate", "--from", str(folder.directory)])
    assert again.exit_code == 0 and "copied 0, already there 5, skipped 1" in again.output


def test_migrate_and_check_say_what_is_wrong(bucket: S3Storage, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["storage", "check"])
    assert ok.exit_code == 0 and f"s3://{bucket.bucket}/images" in ok.output
    nowhere = runner.invoke(cli, ["storage", "migrate", "--from", str(tmp_path / "none")])
    assert nowhere.exit_code != 0 and "No folder" in nowhere.output
    monkeypatch.setenv("IMAGINE_STORAGE_URL", "s3://missing-bucket/x")
    for command in (["storage", "check"], ["storage", "migrate", "--from", str(tmp_path)]):
        refused = runner.invoke(cli, command)
        assert refused.exit_code != 0 and "'missing-bucket' does not exist" in refused.output
    monkeypatch.delenv("IMAGINE_STORAGE_URL")
    unset = runner.invoke(cli, ["storage", "migrate"])
    assert unset.exit_code != 0 and "IMAGINE_STORAGE_URL is not set" in unset.output
