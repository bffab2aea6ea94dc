"""Images in an S3-compatible bucket (AWS S3, MinIO, …), addressed like the local folder.

`IMAGINE_STORAGE_URL=s3://bucket/prefix` puts image NAME at `prefix/NAME.png`. Endpoint,
region and credentials come from boto3's standard chain (AWS_* variables, ~/.aws, a role);
IMAGINE_S3_ENDPOINT points at another server and switches to path-style addressing, which
MinIO and most self-hosted servers need. A PUT is atomic for readers: an object is either
absent or whole. botocore's errors become StorageUnavailable (try again later: deliveries do)
or StorageRefused (the operator must fix something), with a message saying what.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from settings.errors import ConfigError
from settings.i18n import _
from tasks.core.store_base import (
    PRESIGNED_SECONDS,
    ContentNamed,
    StorageError,
    StorageRefused,
    StorageUnavailable,
)
from tasks.errors import ImageMissing

if TYPE_CHECKING:
    from settings import Settings

IMMUTABLE = "public, max-age=31536000, immutable"  # the bytes under a name never change
CHUNK = 64 * 1024
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
REFUSED_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                           "ExpiredToken", "InvalidToken", "403", "Forbidden"})
BUSY_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                        "ServiceUnavailable", "InternalError"})


def parse_storage_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; ConfigError naming the variable otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"IMAGINE_STORAGE_URL must look like s3://bucket/prefix, not {url!r}")
    return parts.netloc, parts.path.strip("/")


class S3Storage(ContentNamed):
    """PNG objects `prefix/NAME.png` in one bucket; NAME is the content hash, as in Storage."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *,
                 endpoint: str | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.where = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint}" if endpoint else "")
        self.endpoint = endpoint

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        assert settings.storage_url is not None
        bucket, prefix = parse_storage_url(settings.storage_url)
        return cls(make_client(settings.s3_endpoint, threads=settings.web_threads), bucket,
                   prefix, endpoint=settings.s3_endpoint)

    def key(self, name: str) -> str:
        if not self.is_valid_name(name):
            raise ValueError(f"not an image name: {name!r}")
        return f"{self.prefix}/{name}.png" if self.prefix else f"{name}.png"

    def put(self, data: bytes) -> str:
        """Store the bytes (once: a name already there is not uploaded again)."""
        name = self.name_for(data)
        if self.exists(name):
            return name
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data,
                                   ContentType="image/png", CacheControl=IMMUTABLE)
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, f"storing image {name}")
        return name

    def exists(self, name: str) -> bool:
        if not self.is_valid_name(name):
            return False
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as exc:
            if _code(exc) in MISSING_CODES:
                return False
            self._fail(exc, _("looking for image {name}").format(name=name))
        except BotoCoreError as exc:
            self._fail(exc, _("looking for image {name}").format(name=name))
        return True

    def read(self, name: str) -> bytes:
        size, chunks = self.stream(name)
        return b"".join(chunks)

    def stream(self, name: str) -> tuple[int, Iterator[bytes]]:
        """(length, the bytes in chunks) of an image: the web app sends them as they come."""
        reply = self._get(name)
        body = reply["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK)
            except (BotoCoreError, OSError) as exc:
                self._fail(exc, f"reading image {name}")
            finally:
                body.close()

        return int(reply["ContentLength"]), chunks()

    def delete(self, name: str) -> None:
        """Remove an image; one already gone is not an error (S3 DELETE never says)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, f"deleting image {name}")

    def names(self) -> Iterator[str]:
        """Every image name under the prefix (other objects there are skipped)."""
        start = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start)
        try:
            for page in pages:
                for entry in page.get("Contents", []):
                    key: str = entry["Key"]
                    name = key[len(start):].removesuffix(".png")
                    if key.endswith(".png") and self.is_valid_name(name):
                        yield name
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, "listing images")

    def size(self, name: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as exc:
            if _code(exc) in MISSING_CODES:
                raise self._missing(name) from None
            self._fail(exc, _("looking for image {name}").format(name=name))
        except BotoCoreError as exc:
            self._fail(exc, _("looking for image {name}").format(name=name))
        return int(head["ContentLength"])

    def url_for(self, name: str, expires: int = PRESIGNED_SECONDS) -> str:
        """A presigned GET URL of the image, valid `expires` seconds (signed locally)."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(name)},
            ExpiresIn=expires)
        return url

    def check(self) -> None:
        """Raise StorageError (saying what to fix) unless the bucket exists and answers us."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            if isinstance(exc, ClientError) and _code(exc) in MISSING_CODES | {"NoSuchBucket"}:
                raise self._no_bucket() from None
            self._fail(exc, _("opening the bucket"))

    def _get(self, name: str) -> dict[str, Any]:
        try:
            reply: dict[str, Any] = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                raise self._missing(name) from None
            self._fail(exc, f"reading image {name}")
        except BotoCoreError as exc:
            self._fail(exc, f"reading image {name}")
        return reply

    def _missing(self, name: str) -> ImageMissing:
        return ImageMissing(_("image {name} is no longer in storage ({where}): it was deleted "
                              "after it was made").format(name=name, where=self.where))

    def _no_bucket(self) -> StorageRefused:
        return StorageRefused(
            _("The bucket {bucket!r} does not exist ({where}): create it (for example `aws s3 "
              "mb s3://{bucket}`, or in MinIO's console) or fix IMAGINE_STORAGE_URL.").format(
                bucket=self.bucket, where=self.where))

    def _fail(self, exc: Exception, action: str) -> NoReturn:
        raise translate(exc, action, self) from exc


def translate(exc: Exception, action: str, store: S3Storage) -> StorageError:
    """botocore's error as one of ours, with what to do about it."""
    if isinstance(exc, NoCredentialsError):
        return StorageRefused(
            _("No S3 credentials while {action} ({where}): set AWS_ACCESS_KEY_ID and "
              "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or give the host a role).").format(
                action=action, where=store.where))
    if isinstance(exc, (BotoConnectionError, HTTPClientError, OSError)):
        endpoint = store.endpoint or "S3"
        return StorageUnavailable(
            _("The image store {endpoint} did not answer while {action} ({name}); check that "
              "it is running and reachable (IMAGINE_S3_ENDPOINT). Retried later.").format(
                endpoint=endpoint, action=action, name=type(exc).__name__))
    if isinstance(exc, ClientError):
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "NoSuchBucket":
            return store._no_bucket()
        if code in REFUSED_CODES:
            return StorageRefused(
                _("S3 refused our credentials while {action} ({where}: {code}): check "
                  "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and that they may read and write "
                  "the bucket.").format(action=action, where=store.where, code=code))
        if code in BUSY_CODES or status >= 500:
            return StorageUnavailable(
                _("The image store is failing ({code}, HTTP {status}) while {action} "
                  "({where}); retried later.").format(
                    code=code, status=status, action=action, where=store.where))
        return StorageRefused(_("S3 answered {code} (HTTP {status}) while {action} "
                                "({where}).").format(
                                  code=code, status=status, action=action,
                                  where=store.where))
    return StorageError(_("S3 failed while {action} ({where}): {exc}").format(
                            action=action, where=store.where, exc=exc))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def make_client(endpoint: str | None, *, threads: int = 10) -> Any:
    """A boto3 S3 client (thread-safe; one per process). An endpoint means a self-hosted
    server: path-style addressing (no bucket DNS names) and only the checksums S3 needs."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"} if endpoint else {},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=3, read_timeout=20,
        # One connection per web thread, so concurrent hits never wait for a socket.
        max_pool_connections=max(10, threads + 2),
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
