"""A real S3-protocol server for tests: moto's server mode on a free port in this process.

`s3_server` (session) runs it; it keeps its objects across `stop()`/`start()` on the same
port, which is how the tests take the endpoint down and bring it back. `s3_env` (per test)
makes a fresh bucket, points this process at it (IMAGINE_STORAGE_URL, IMAGINE_S3_ENDPOINT,
dummy AWS credentials) and returns those variables for child processes:
`process_env(..., **s3_env)` or `{**imagine_env, **s3_env}`.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.local.embedded_redis import free_port

REGION = "us-east-1"
# Dummy credentials, and no ~/.aws or instance metadata of the machine consulted.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_buckets = itertools.count()


class S3Server:
    """moto's S3 on 127.0.0.1:`port`; `stop()` then `start()` is an outage and a recovery."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server: Any = None  # moto.server.ThreadedMotoServer, imported when started

    def start(self) -> None:
        if self._server is None:
            from moto.server import ThreadedMotoServer  # noqa: PLC0415 - only tests using S3

            # Its request log would fill every failing test's output; only errors.
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port,
                                              verbose=False)
            self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def client(self) -> Any:
        """A boto3 client of this server with the dummy credentials (for checks and setup)."""
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(s3={"addressing_style": "path"}))

    def new_bucket(self, stem: str = "imagine") -> str:
        name = f"{stem}-{os.getpid()}-{next(_buckets)}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the (running) server."""
    s3_server.start()  # a test that stopped it and failed midway left it down
    return s3_server.new_bucket()


@pytest.fixture
def s3_env(s3_server: S3Server, s3_bucket: str,
           monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Images in `s3://<fresh bucket>/images` on the test server, for this process (set in
    os.environ: apply after imagine_env/clean_env) and for child processes (returned)."""
    env = {**AWS_ENV, "IMAGINE_STORAGE_URL": f"s3://{s3_bucket}/images",
           "IMAGINE_S3_ENDPOINT": s3_server.endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
