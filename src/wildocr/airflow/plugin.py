"""`WildOcrPlugin`: template macros for DAGs that consume the wildocr tables.

Registered through the `airflow.plugins` entry point in pyproject.toml, so `pip install wildocr` is all a
deployment needs (nothing is copied into plugins/). Operators are not plugins in Airflow 3: they are
imported from `wildocr.airflow.operators` like any package.

    {{ macros.wildocr.output_root() }}                       -> s3://wildocr-lake/ocr (Variable or default)
    {{ macros.wildocr.partition_url(root, "words", ds) }}    -> <root>/words/dt=2026-03-01
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin


def output_root() -> str:
    """The output root the DAGs use when no Param overrides it: the Variable, else the embedded default."""
    from airflow.sdk import Variable

    from wildocr.airflow import settings

    return (Variable.get(settings.VAR_OUTPUT_ROOT, default=None) or settings.default_output_root()).rstrip(
        "/"
    )


def partition_url(root: str, table: str, dt: str) -> str:
    """URL of one dt partition of the `images` or `words` table (the storage layer's own rule)."""
    from wildocr.storage.tables import partition_url as _partition_url

    return _partition_url(root, table, dt)


class WildOcrPlugin(AirflowPlugin):
    name = "wildocr"
    macros: ClassVar[list] = [output_root, partition_url]
