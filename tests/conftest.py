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
# appended to one JSON-lines file that tests/airflow/test_lineage.py reads back. Emission in a thread,
# not a fork of the test process.
os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
    {"type": "file", "log_file_path": str(_TMP / "openlineage.jsonl"), "append": True}
)
os.environ["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "wildocr-tests"
os.environ["AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD"] = "True"

if str(ROOT) not in sys.path:  # `include.sample_data`, `tests.s3server`, `dags.*`
    sys.path.insert(0, str(ROOT))

# The moto S3 server fixtures (`s3_server`, `s3_bucket`) and the fault-injecting proxy (`fault_proxy`), for
# every test module.
pytest_plugins = ["tests.s3server", "tests.faultproxy"]


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """A fresh Airflow metadata schema (SQLite, ~1 s); request it in tests that run DAGs."""
    from airflow.utils import db

    db.resetdb()
    yield


@pytest.fixture(scope="session")
def ocr_engine():
    """The OCR engine with its default settings on CPU, loaded once per session (three ONNX sessions).

    Request it in any test that only needs *an* engine; a test that needs other settings (`lazy=True`, a
    backend, `verify_words=False`, ...) builds its own `OCREngine`. The engine keeps no per-read state, so
    sharing it does not couple the tests that use it.
    """
    from wildocr.engine import EngineConfig, OCREngine

    return OCREngine(EngineConfig(device="cpu"))


@pytest.fixture
def wildocr_home() -> Path:
    """The embedded default store the DAGs use when no Param or Variable names a location, emptied first:
    a test that asks for it sees only what it writes, whichever DAG runs came before it in the session."""
    home = Path(os.environ["WILDOCR_HOME"])
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def output_root(tmp_path_factory, ocr_engine) -> str:
    """Generated photos with EXIF (Canon + GPS, Apple turned 90°, a PNG without), a re-upload of the first,
    a photo with a bad Orientation and one broken file, OCRed into two daily partitions (one shard each).
    Shared by tests/storage/test_tables.py (DuckDB) and tests/e2e/test_spark_tables.py (Spark), read only.
    """
    from PIL import Image

    from include.sample_data import generate
    from tests.helpers import DAYS
    from wildocr.pipeline import fused, run

    base = tmp_path_factory.mktemp("sql")
    src = base / "src"
    generate(str(src), count=3, seed=21, exif=True)
    (src / "sample_0000_copy.jpg").write_bytes((src / "sample_0000.jpg").read_bytes())
    (src / "zz_broken.jpg").write_bytes(b"not a photo")
    odd = Image.new("RGB", (160, 90), "white")
    exif = Image.Exif()
    exif[0x0112] = 9  # not an orientation
    odd.save(src / "zz_odd_exif.jpg", exif=exif)
    root = str(base / "ocr")
    manifest_url = str(base / "manifest.parquet")
    assert run.build_manifest(str(src), manifest_url, shard_size=3) == [0, 1]
    engine = ocr_engine
    for number, day in enumerate(DAYS):
        fused.process_shard(manifest_url, number, output_root=root, dt=day, run_id="sql-test", engine=engine)
    return root
