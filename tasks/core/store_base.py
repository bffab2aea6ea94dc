"""What every image store shares: content names, the ImageStore protocol, storage errors.

Apart from tasks.core.storage so that the S3 store can use them while storage.py opens it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Protocol

from settings.errors import ImagineError

NAME_PATTERN = re.compile(r"^[0-9a-f]{32}$")
PRESIGNED_SECONDS = 3600  # life of a presigned URL unless the caller asks otherwise


class StorageError(ImagineError, OSError):
    """The image store could not be used. An OSError too, so callers that already survive a
    full disk (the runner) or retry on one (deliveries, RETRYABLE) treat a bucket the same."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.strerror = message  # what OSError handlers print


class StorageUnavailable(StorageError):
    """The store did not answer or answered 5xx: worth another try later."""


class StorageRefused(StorageError):
    """The store refused us: no such bucket, credentials rejected, access denied."""


class ImageStore(Protocol):
    """What the rest of the project needs from wherever images live."""

    def name_for(self, data: bytes) -> str: ...

    def is_valid_name(self, name: str) -> bool: ...

    def put(self, data: bytes) -> str: ...

    def exists(self, name: str) -> bool: ...

    def read(self, name: str) -> bytes: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> Iterator[str]: ...

    def size(self, name: str) -> int: ...

    def url_for(self, name: str, expires: int = PRESIGNED_SECONDS) -> str | None: ...


def content_name(data: bytes) -> str:
    """The name of an image: the first 128 bits of the SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()[:32]


def valid_name(name: str) -> bool:
    return bool(NAME_PATTERN.match(name))


class ContentNamed:
    """Content addressing, the same in every store: an image's name is the hash of its
    bytes, so a store written twice with the same PNG holds it once."""

    @staticmethod
    def name_for(data: bytes) -> str:
        return content_name(data)

    @staticmethod
    def is_valid_name(name: str) -> bool:
        return valid_name(name)
