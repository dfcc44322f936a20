"""The pinned install holds together, and every component the deployment runs can be loaded.

`pip check` alone did not catch that celery 5.7 broke apache-airflow-providers-celery (an import error at
worker start), and nothing imported the Postgres driver; so this loads each piece the way the deployment
does, in a fresh interpreter with the compose file's settings: the CeleryExecutor and its worker module,
the Postgres dialects of the metadata DB (sync and the api-server's async one) and of the Celery result
backend, the Redis broker client, and the amazon provider's S3 hook. Nothing connects anywhere.
The running stack itself is tested by `make test-stack` (tests_stack/).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import COMPOSE, env_map, interpolate

pytestmark = pytest.mark.slow  # `pip check`, `pip freeze` and fresh interpreters that load every component

ROOT = Path(__file__).resolve().parents[2]

# The compose services' host names, swapped for a closed port: nothing may be contacted.
UNREACHABLE = {
    "@postgres/": "@127.0.0.1:1/",
    "@redis:6379/": "@127.0.0.1:1/",
    "//airflow-apiserver:8080/": "//127.0.0.1:1/",
    "//minio:9000": "//127.0.0.1:1",
}

LOAD_EVERY_COMPONENT = r"""
from airflow.executors.executor_loader import ExecutorLoader

executor = ExecutorLoader.get_default_executor()
assert type(executor).__name__ == "CeleryExecutor", executor

# what `airflow celery worker` imports, and its Celery app with the broker and result backend configured
from airflow.providers.celery.executors import celery_executor_utils
app = celery_executor_utils.app
assert app.conf.broker_url.startswith("redis://"), app.conf.broker_url
assert app.conf.task_acks_late is True and app.conf.worker_prefetch_multiplier == 1

import sqlalchemy
from sqlalchemy.ext.asyncio import create_async_engine

sync = sqlalchemy.create_engine("postgresql+psycopg2://u:p@127.0.0.1:1/airflow")
assert sync.dialect.driver == "psycopg2"
from airflow import settings
assert settings.SQL_ALCHEMY_CONN_ASYNC.startswith("postgresql+asyncpg://"), settings.SQL_ALCHEMY_CONN_ASYNC
assert create_async_engine(settings.SQL_ALCHEMY_CONN_ASYNC).dialect.driver == "asyncpg"
# Celery's database result backend builds its own engine from the URL after `db+`
result_backend = app.conf.result_backend.removeprefix("db+")
assert sqlalchemy.create_engine(result_backend).dialect.driver == "psycopg2", result_backend

import redis
redis.Redis.from_url(app.conf.broker_url)

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
S3Hook(aws_conn_id="wildocr_s3")
print("all components load")
"""


def test_pip_check_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_deployed_component_loads_with_the_compose_settings(tmp_path: Path) -> None:
    """The x-airflow-common environment of docker-compose.yaml (local defaults), hosts made unreachable."""
    compose = yaml.safe_load(COMPOSE.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    for key, value in env_map(compose["x-airflow-common"]).items():
        value = interpolate(value)
        for host, nowhere in UNREACHABLE.items():
            value = value.replace(host, nowhere)
        env[key] = value
    env |= {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW_CONFIG": str(tmp_path / "airflow.cfg")}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_EVERY_COMPONENT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "all components load" in result.stdout


def _check_pins(constraints: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "docker/check_pins.py"), str(constraints), "wildocr[cpu,airflow,dev]"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_installed_package_is_at_its_pin(tmp_path: Path) -> None:
    """The same check the image build runs (docker/Dockerfile): venv and image hold one pinned set."""
    result = _check_pins(ROOT / "constraints.txt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check_pins.py" in (ROOT / "docker" / "Dockerfile").read_text()
    # ...and it notices a pin that does not match, or a package without one.
    text = (ROOT / "constraints.txt").read_text()
    broken = tmp_path / "constraints.txt"
    broken.write_text(
        "\n".join(
            "celery==0.0.1" if line.startswith("celery==") else line
            for line in text.splitlines()
            if not line.startswith("redis==")
        )
    )
    result = _check_pins(broken)
    assert result.returncode == 1
    assert "celery: installed" in result.stderr and "redis " in result.stderr, result.stderr
