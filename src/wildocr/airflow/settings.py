"""Names the Airflow layer agrees on (connection, Variables, queue, pool, Assets, task ids) and where the
data lives (the output root and source prefix rules, the embedded default).

Kept free of Airflow imports so that `include/demo.py`, the docs and the tests can use the same rules
without starting Airflow; callers read the Variables their own way (task code through `airflow.sdk`, the
api-server's browser through the metadata DB) and hand the values to `output_root` / `source_prefix`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CONN_ID = "wildocr_s3"  # an `aws` connection; extra `endpoint_url` for MinIO / any S3-compatible store
VAR_SOURCE_PREFIX = "wildocr_source_prefix"  # a template: `s3://bucket/photos/{{ ds }}/`
VAR_OUTPUT_ROOT = "wildocr_output_root"  # e.g. `s3://wildocr-lake/ocr`
VAR_MODEL_DIR = "wildocr_model_dir"  # a model folder on every worker's disk; unset: the stock weights
GPU_QUEUE = "gpu"  # Celery queue served only by workers with a GPU
GPU_POOL = "gpu"  # slots = GPUs, so two shards never fight over one device
IMAGES_ASSET_URI = "wildocr://tables/images"
WORDS_ASSET_URI = "wildocr://tables/words"
MODES = ("staged", "fused")  # staged: four tasks per shard; fused: the detect task does it all
DEFAULT_SHARD_SIZE = 128  # ~40 s of CPU OCR or ~5 s of GPU OCR per task; see docs/airflow.md


def wildocr_home() -> Path:
    """Root of the embedded default store: `$WILDOCR_HOME`, else `data/` beside `$AIRFLOW_HOME`.

    Beside, not inside: `./airflow_home` (metadata DB, logs) and `./data` (photos, tables) can then be wiped
    independently. With Airflow's own default `AIRFLOW_HOME=~/airflow` this gives `~/data`; set
    WILDOCR_HOME to choose another place.
    """
    if home := os.environ.get("WILDOCR_HOME"):
        return Path(home).expanduser().resolve()
    airflow_home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser().resolve()
    return airflow_home.parent / "data"


def default_source_prefix() -> str:
    """Where the nightly DAG looks for a day's photos when neither a Param nor the Variable says."""
    return f"{wildocr_home()}/photos/{{{{ ds }}}}/"


def default_output_root() -> str:
    """Where the tables go when neither a Param nor the Variable says."""
    return f"{wildocr_home()}/ocr"


# Task ids: the task graph (taskgraph.py) creates them, the finalize task and the browser read XComs by them.
MANIFEST_TASK = "manifest"
OCR_GROUP = "ocr"  # the mapped task group, one instance per shard
DETECT_TASK, CROP_TASK, RECOGNIZE_TASK, PUBLISH_TASK = "detect", "crop", "recognize", "publish"
FINALIZE_TASK = "finalize"
RUN_XCOM_KEY = "run"  # the manifest task's XCom holding the run plan
# The shard tasks whose return value is a shard summary: publish (staged) or detect (fused).
SUMMARY_TASKS = (f"{OCR_GROUP}.{DETECT_TASK}", f"{OCR_GROUP}.{PUBLISH_TASK}")


def _given(value: Any) -> str | None:
    """A Param or Variable value, None when unset (native templates render None, string ones 'None')."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    return str(value).strip()


def output_root(param: Any = None, variable: Any = None) -> str:
    """Where the tables go: the `output_root` Param, else the Variable, else the embedded default."""
    return (_given(param) or _given(variable) or default_output_root()).rstrip("/")


def model_dir(param: Any = None, variable: Any = None) -> str | None:
    """Which weights run: the `model_dir` Param, else the Variable, else None (the stock weights)."""
    return _given(param) or _given(variable)


def source_prefix(param: Any = None, variable: Any = None) -> str:
    """Where a day's photos are (a template): the Param, else the Variable, else the embedded default."""
    return _given(param) or _given(variable) or default_source_prefix()
