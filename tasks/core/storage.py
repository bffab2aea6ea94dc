"""Content-addressed image files: the name is the hash of the bytes.

Writing the same PNG twice (a redelivered job) yields the same name and one file, which is
what makes redelivery harmless.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from tasks.errors import ImageMissing

NAME_PATTERN = re.compile(r"^[0-9a-f]{32}$")


class Storage:
    """PNG files in one folder, named by the first 128 bits of their SHA-256."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def name_for(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:32]

    @staticmethod
    def is_valid_name(name: str) -> bool:
        return bool(NAME_PATTERN.match(name))

    def path(self, name: str) -> Path:
        if not self.is_valid_name(name):
            raise ValueError(f"not an image name: {name!r}")
        return self.directory / name[:2] / f"{name}.png"

    def put(self, data: bytes) -> str:
        name = self.name_for(data)
        target = self.path(name)
        if target.exists():
            return name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader never sees half a file, and two writers agree.
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return name

    def exists(self, name: str) -> bool:
        return self.is_valid_name(name) and self.path(name).exists()

    def read(self, name: str) -> bytes:
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            raise ImageMissing(
                f"image {name} is no longer in storage ({self.directory}): it was deleted "
                "after it was made") from None
