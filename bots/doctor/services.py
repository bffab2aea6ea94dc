"""Redis (configured, or the embedded one `imagine up` starts), the data folder and the image
store (a local folder with its free space, or the S3 bucket of IMAGINE_STORAGE_URL)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import redis

from bots.doctor.report import Check, fail, ok
from settings import Settings
from settings.errors import ImagineError
from tasks.core.connection import embedded_redis_dir, redis_url

TIMEOUT = 3.0  # seconds: a doctor that hangs on one part tells nothing about the others
GB = 1024 ** 3


def check_redis(settings: Settings) -> Check:
    if settings.redis_url:
        return _configured_redis(settings.redis_url)
    from tasks.local.embedded_redis import redis_server_binary  # noqa: PLC0415

    socket = embedded_redis_dir(settings) / "redis.sock"
    if socket.exists() and _answers(redis_url(settings)) is None:
        return ok("redis", f"embedded Redis running ({socket})")
    try:
        binary = redis_server_binary()
    except ImagineError as exc:
        return fail("redis", "IMAGINE_REDIS_URL is unset and no server for the embedded "
                             "Redis was found", exc.message)
    return ok("redis", f"IMAGINE_REDIS_URL unset: `imagine up` starts an embedded Redis "
                       f"({binary}) with data in {embedded_redis_dir(settings)}")


def _configured_redis(url: str) -> Check:
    where = redis.connection.parse_url(url)
    shown = where.get("path") or f"{where.get('host', '')}:{where.get('port', 6379)}"
    problem = _answers(url)
    if problem is None:
        return ok("redis", f"Redis at {shown} answers")
    return fail("redis", f"Redis at {shown} (IMAGINE_REDIS_URL) does not answer: {problem}",
                "start Redis there, or fix IMAGINE_REDIS_URL (host, port, password); unset "
                "it to let `imagine up` run an embedded Redis")


def _answers(url: str) -> str | None:
    """None when the server answers PING, else what went wrong."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT,
                                      socket_timeout=TIMEOUT)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as exc:
        return str(exc) or type(exc).__name__
    return None


def check_data_dir(settings: Settings, min_free_gb: float) -> Check:
    return _folder_check("data folder", settings.data_dir, "IMAGINE_DATA_DIR", min_free_gb)


def check_storage(settings: Settings, min_free_gb: float) -> Check:
    if settings.storage_url:
        return _bucket_check(settings)
    return _folder_check("image storage", settings.images_dir, "IMAGINE_STORAGE_DIR",
                         min_free_gb)


def _folder_check(name: str, folder: Path, variable: str, min_free_gb: float) -> Check:
    """Writable (a file is made and removed there) and at least `min_free_gb` free."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return fail(name, f"{folder} is not writable: {exc.strerror or exc}",
                    f"give this user write access to {folder} (chown/chmod), or set "
                    f"{variable} to a writable folder")
    free = shutil.disk_usage(folder if folder.exists() else existing).free / GB
    detail = f"{folder}: writable, {free:.1f} GB free"
    if free < min_free_gb:
        return fail(name, f"{detail}, below --min-free {min_free_gb:g} GB",
                    f"free space on that disk, or set {variable} to a folder on a larger "
                    "one (images and Redis' data grow with use)")
    return ok(name, detail)


def _bucket_check(settings: Settings) -> Check:
    try:
        from tasks.core.s3_storage import S3Storage  # noqa: PLC0415 - boto3 only when used
    except ImportError as exc:  # boto3 missing: the s3 extra is not installed
        return fail("image storage", f"IMAGINE_STORAGE_URL is set but {exc}",
                    "pip install boto3 (imagine's s3 extra)")
    try:
        bucket = S3Storage.from_settings(settings)
        bucket.check()
    except ImagineError as exc:
        return fail("image storage", f"{settings.storage_url}: {exc.message}",
                    "create the bucket, or fix IMAGINE_STORAGE_URL, IMAGINE_S3_ENDPOINT and "
                    "the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY credentials")
    return ok("image storage", f"bucket {bucket.where} answers")

