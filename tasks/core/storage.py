"""Content-addressed images: the name is the hash of the bytes.

Writing the same PNG twice (a redelivered job) yields the same name and one copy, which is
what makes redelivery harmless. Two stores share that addressing: a local folder (`Storage`,
the default) and an S3-compatible bucket (`tasks.core.s3_storage.S3Storage`, when
IMAGINE_STORAGE_URL is set); `open_storage(settings)` picks one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from settings.i18n import _
from tasks.core.store_base import (
    PRESIGNED_SECONDS,
    ContentNamed,
    ImageStore,
    StorageError,
    StorageRefused,
    StorageUnavailable,
)
from tasks.errors import ImageMissing

if TYPE_CHECKING:
    from settings import Settings

__all__ = ["ImageStore", "Storage", "StorageError", "StorageRefused", "StorageUnavailable",
           "open_storage"]


class Storage(ContentNamed):
    """PNG files in one folder, named by the first 128 bits of their SHA-256."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

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
            raise self._missing(name) from None

    def delete(self, name: str) -> None:
        """Remove an image; one already gone is not an error."""
        self.path(name).unlink(missing_ok=True)

    def names(self) -> Iterator[str]:
        """Every image name in the folder (temporary files of writes in progress skipped)."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob("??/*.png"):
            if self.is_valid_name(path.stem):
                yield path.stem

    def size(self, name: str) -> int:
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            raise self._missing(name) from None

    def url_for(self, name: str, expires: int = PRESIGNED_SECONDS) -> str | None:
        """None: a folder has no URL of its own; the web app serves its files."""
        return None

    def _missing(self, name: str) -> ImageMissing:
        return ImageMissing(
            _("image {name} is no longer in storage ({directory}): it was deleted after it was "
              "made").format(name=name, directory=self.directory))


def open_storage(settings: Settings) -> ImageStore:
    """The store `settings` name: the bucket of IMAGINE_STORAGE_URL when set, else the
    folder (IMAGINE_STORAGE_DIR, or DATA_DIR/images)."""
    if settings.storage_url:
        from tasks.core.s3_storage import S3Storage  # noqa: PLC0415 - boto3 only when used

        return S3Storage.from_settings(settings)
    return Storage(settings.images_dir)
