"""A real S3 endpoint on loopback for tests: moto's ThreadedMotoServer, talked to through s3fs.

Shared by the storage, Airflow and reliability tests (owner: storage helper; ask before changing the API).
It is a plugin, declared once in tests/conftest.py, so its fixtures are visible in every test module:

    pytest_plugins = ["tests.s3server"]        # the repo root must be on sys.path (conftest.py does it)

    def test_x(s3_bucket):                     # a fresh, empty bucket per test
        url = f"s3://{s3_bucket.name}/photos/"  # pass s3_bucket.storage_options to fsspec / wildocr.storage
        s3_bucket.fs.pipe_file(f"{s3_bucket.name}/photos/a.jpg", b"...")

Fixtures: `s3_server` (session: one server for the whole run) and `s3_bucket` (function: a new bucket).
`S3Server.env()` gives AWS_* variables and `S3Server.airflow_conn_json()` an `aws` connection (for
AIRFLOW_CONN_WILDOCR_S3) pointing at the same server. Any key/secret is accepted by moto.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    """A running moto server and the settings every client needs to reach it."""

    endpoint: str
    _counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options (also what `wildocr.storage` takes as `storage_options`)."""
        return {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": REGION},
        }

    @property
    def fs(self):  # -> s3fs.S3FileSystem
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options)

    def env(self) -> dict[str, str]:
        """Environment for subprocesses and SDKs that read AWS_* variables."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def airflow_conn_json(self) -> str:
        """An Airflow `aws` connection (JSON form) for this server, e.g. AIRFLOW_CONN_WILDOCR_S3."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": self.endpoint, "region_name": REGION},
            }
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name when none is given) and return its name."""
        import boto3

        name = name or f"wildocr-test-{next(self._counter):04d}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )
        client.create_bucket(Bucket=name)  # us-east-1: no LocationConstraint (s3fs.mkdir would send one)
        self.fs.invalidate_cache()
        return name


@dataclass
class S3Bucket:
    """One bucket on the test server."""

    server: S3Server
    name: str

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.server.storage_options

    @property
    def fs(self):  # -> s3fs.S3FileSystem
        return self.server.fs

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key.lstrip('/')}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    return S3Bucket(server=s3_server, name=s3_server.create_bucket())
