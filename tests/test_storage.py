"""Content-addressed storage: same bytes, same name, one file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.delivery import retry_after_seconds
from tasks.core.storage import Storage


def test_same_bytes_same_name_and_one_file(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    first = storage.put(b"\x89PNG fake")
    assert storage.put(b"\x89PNG fake") == first
    assert storage.read(first) == b"\x89PNG fake"
    assert len(list(tmp_path.rglob("*.png"))) == 1
    assert storage.put(b"other") != first


def test_names_cannot_escape_the_folder(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    assert not storage.exists("../../etc/passwd")
    with pytest.raises(ValueError):
        storage.path("../x")


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None, default=5) == 5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
