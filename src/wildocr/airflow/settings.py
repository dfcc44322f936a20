"""Names the Airflow layer agrees on (connection, Variables, queue, pool, Assets) and the embedded default.

Kept free of Airflow imports so that `include/demo.py`, the docs and the tests can use the same rule for
where the embedded default lives without starting Airflow.
"""

from __future__ import annotations

import os
from pathlib import Path

CONN_ID = "wildocr_s3"  # an `aws` connection; extra `endpoint_url` for MinIO / any S3-compatible store
VAR_SOURCE_PREFIX = "wildocr_source_prefix"  # a template: `s3://bucket/photos/{{ ds }}/`
VAR_OUTPUT_ROOT = "wildocr_output_root"  # e.g. `s3://wildocr-lake/ocr`
GPU_QUEUE = "gpu"  # Celery queue served only by workers with a GPU
GPU_POOL = "gpu"  # slots = GPUs, so two shards never fight over one device
IMAGES_ASSET_URI = "wildocr://tables/images"
WORDS_ASSET_URI = "wildocr://tables/words"
MODES = ("staged", "fused")
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
