"""S3-compatible storage against a real S3-protocol server (moto's, tests/fixtures_s3.py):
same content addressing as the folder, errors that say what to fix, an outage and back."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from settings import Settings
from settings.errors import ConfigError
from tasks.core.s3_storage import S3Storage, make_client, parse_storage_url, translate
from tasks.core.storage import (
    Storage,
    StorageRefused,
    StorageUnavailable,
    open_storage,
)
from tasks.errors import ImageMissing
from tests.fixtures_s3 import S3Server

PNG = b"\x89PNG\r\n\x1a\n not really a png"


@pytest.fixture
def store(clean_env: None, s3_env: dict[str, str]) -> S3Storage:
    storage = open_storage(Settings(_env_file=None))
    assert isinstance(storage, S3Storage)
    return storage


def test_the_storage_url_wins_over_the_folder(clean_env: None, s3_env: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("IMAGINE_STORAGE_DIR", str(tmp_path))
    assert isinstance(open_storage(Settings(_env_file=None)), S3Storage)
    monkeypatch.delenv("IMAGINE_STORAGE_URL")
    folder = open_storage(Settings(_env_file=None))
    assert isinstance(folder, Storage) and folder.directory == tmp_path


def test_put_read_list_size_delete_as_the_folder_does(store: S3Storage, s3_server: S3Server,
                                                      tmp_path: Path) -> None:
    name = store.put(PNG)
    assert name == Storage(tmp_path).put(PNG)  # same content addressing
    assert store.put(PNG) == name  # a second put of the same bytes: one object
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert keys == [f"images/{name}.png"]
    assert store.exists(name) and store.read(name) == PNG and store.size(name) == len(PNG)
    s3_server.client().put_object(Bucket=store.bucket, Key="images/notes.txt", Body=b"x")
    assert list(store.names()) == [name]  # other objects under the prefix are not images
    store.delete(name)
    store.delete(name)  # already gone: fine
    assert not store.exists(name) and list(store.names()) == []


def test_a_missing_object_is_image_missing(store: S3Storage) -> None:
    with pytest.raises(ImageMissing, match="no longer in storage"):
        store.read("0" * 32)
    with pytest.raises(ImageMissing):
        store.size("0" * 32)
    assert not store.exists("0" * 32) and not store.exists("../../etc/passwd")
    with pytest.raises(ValueError):
        store.key("../x")


def test_presigned_url_serves_the_immutable_image(store: S3Storage) -> None:
    name = store.put(PNG)
    url = store.url_for(name, expires=120)
    assert "X-Amz-Expires=120" in url and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.read() == PNG
        assert reply.headers["Content-Type"] == "image/png"
        assert "immutable" in reply.headers["Cache-Control"]


def test_a_missing_bucket_is_named_with_what_to_do(clean_env: None, s3_env: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_STORAGE_URL", "s3://no-such-bucket/images")
    store = open_storage(Settings(_env_file=None))
    assert isinstance(store, S3Storage)
    for action in (store.check, lambda: store.put(PNG), lambda: store.read("0" * 32)):
        with pytest.raises(StorageRefused, match="'no-such-bucket' does not exist.*create it"):
            action()


def test_missing_and_refused_credentials_say_which_variables(
        clean_env: None, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_storage(Settings(_env_file=None))
    with pytest.raises(StorageRefused, match="No S3 credentials.*AWS_ACCESS_KEY_ID"):
        store.put(PNG)
    # moto accepts any key, so the refusal a real server sends is built here, as botocore would.
    refused = ClientError({"Error": {"Code": "InvalidAccessKeyId"},
                           "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
    assert isinstance(store, S3Storage)
    error = translate(refused, "storing", store)
    assert isinstance(error, StorageRefused) and "refused our credentials" in error.message
    busy = ClientError({"Error": {"Code": "InternalError"},
                        "ResponseMetadata": {"HTTPStatusCode": 500}}, "GetObject")
    assert isinstance(translate(busy, "reading", store), StorageUnavailable)


def test_endpoint_down_then_back(store: S3Storage, s3_server: S3Server) -> None:
    name = store.put(PNG)
    s3_server.stop()
    try:
        with pytest.raises(StorageUnavailable, match="did not answer.*IMAGINE_S3_ENDPOINT") as info:
            store.read(name)
        assert isinstance(info.value, OSError)  # what deliveries retry (RETRYABLE)
        with pytest.raises(StorageUnavailable):
            store.put(b"other")
    finally:
        s3_server.start()
    assert store.read(name) == PNG


@pytest.mark.parametrize("url", ["s3://", "http://bucket/x", "s3://bucket/x?y=1", "bucket"])
def test_bad_storage_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="IMAGINE_STORAGE_URL"):
        parse_storage_url(url)


def test_url_prefix_and_client_addressing(s3_server: S3Server) -> None:
    assert parse_storage_url("s3://b/a/b/") == ("b", "a/b")
    assert parse_storage_url("s3://b") == ("b", "")
    store = S3Storage(make_client(s3_server.endpoint), "b", "")
    assert store.key("0" * 32) == f"{'0' * 32}.png"
    assert store.client.meta.config.s3["addressing_style"] == "path"
