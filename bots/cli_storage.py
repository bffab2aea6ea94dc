"""`imagine storage check` and `imagine storage migrate`: the image bucket from the command
line (IMAGINE_STORAGE_URL, tasks.core.s3_storage)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import click

from settings import Settings, load_settings
from settings.errors import ImagineError

if TYPE_CHECKING:
    from tasks.core.s3_storage import S3Storage
    from tasks.core.storage import Storage

COPY_THREADS = 8  # uploads are latency-bound: a few in flight at once


@click.group()
def storage() -> None:
    """Where images are kept: check the bucket, copy a local folder into it."""


def _bucket_settings() -> Settings:
    try:
        settings = load_settings()
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    if not settings.storage_url:
        raise click.ClickException(
            "IMAGINE_STORAGE_URL is not set: images are kept in the folder "
            f"{settings.images_dir}. Set it to s3://bucket/prefix to use a bucket.")
    return settings


@storage.command()
def check() -> None:
    """Say whether the bucket of IMAGINE_STORAGE_URL exists and answers."""
    from tasks.core.s3_storage import S3Storage  # noqa: PLC0415, F811 - boto3 only when used

    bucket = S3Storage.from_settings(_bucket_settings())
    try:
        bucket.check()
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"ok: {bucket.where}")


@storage.command()
@click.option("--from", "source", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="The folder to copy [default: IMAGINE_STORAGE_DIR, or "
                                 "IMAGINE_DATA_DIR/images].")
def migrate(source: Path | None) -> None:
    """Copy a local image folder into the bucket (again: only what is missing)."""
    from tasks.core.s3_storage import S3Storage  # noqa: PLC0415, F811
    from tasks.core.storage import Storage  # noqa: PLC0415, F811

    settings = _bucket_settings()
    folder = Storage(source or settings.images_dir)
    if not folder.directory.is_dir():
        raise click.ClickException(f"No folder {folder.directory} to copy (--from DIR).")
    bucket = S3Storage.from_settings(settings)
    try:
        bucket.check()
        with ThreadPoolExecutor(COPY_THREADS) as pool:
            counts = Counter(pool.map(lambda name: _copy(folder, bucket, name),
                                      folder.names()))
    except ImagineError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"copied {counts['copied']}, already there {counts['present']}, "
               f"skipped {counts['bad']} (bytes do not match the name) from {folder.directory} "
               f"to {bucket.where}")


def _copy(folder: Storage, bucket: S3Storage, name: str) -> str:
    """One image: "present", "copied", or "bad" (its bytes are not what its name says)."""
    if bucket.exists(name):
        return "present"
    data = folder.read(name)
    if folder.name_for(data) != name:
        click.echo(f"skipped {name}: its bytes do not match its name (a damaged file?)",
                   err=True)
        return "bad"
    bucket.put(data)
    return "copied"
