"""Test environment shared by every test module.

Airflow reads its configuration on first import, so the environment is fixed here, before any test module
can import `airflow`. Everything points into one temporary directory: a developer's own AIRFLOW_HOME,
metadata database or WILDOCR_HOME are never touched (the values are forced, not defaulted, because
`airflow_db` wipes the database it is given).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_TMP = Path(tempfile.mkdtemp(prefix="wildocr-tests-"))

os.environ["AIRFLOW_HOME"] = str(_TMP / "airflow_home")
os.environ["WILDOCR_HOME"] = str(_TMP / "data")  # the embedded default store of the DAGs
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_TMP / 'airflow_home' / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")  # dag.test() re-parses this bundle
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
# Not AIRFLOW__CORE__UNIT_TEST_MODE: it loads unit_tests.cfg, whose scheduling defaults differ from prod.
os.environ.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
(_TMP / "airflow_home").mkdir()
# OpenLineage (providers-openlineage reads this once per process): every event of every dag.test() run is
# appended to one JSON-lines file that tests/test_lineage_partitions.py reads back. Emission in a thread,
# not a fork of the test process.
os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
    {"type": "file", "log_file_path": str(_TMP / "openlineage.jsonl"), "append": True}
)
os.environ["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "wildocr-tests"
os.environ["AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD"] = "True"

if str(ROOT) not in sys.path:  # `include.sample_data`, `tests.s3server`, `dags.*`
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """A fresh Airflow metadata schema (SQLite, ~1 s); request it in tests that run DAGs."""
    from airflow.utils import db

    db.resetdb()
    yield


@pytest.fixture
def wildocr_home() -> Path:
    """The embedded default store the DAGs use when no Param or Variable names a location."""
    return Path(os.environ["WILDOCR_HOME"])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_TMP, ignore_errors=True)
