"""`WildOcrPlugin`: the results browser in the Airflow UI, and template macros for consumer DAGs.

Registered through the `airflow.plugins` entry point in pyproject.toml, so `pip install wildocr` is all a
deployment needs (nothing is copied into plugins/). Operators are not plugins in Airflow 3: they are
imported from `wildocr.airflow.operators` like any package.

    {{ macros.wildocr.output_root() }}                       -> s3://wildocr-lake/ocr (Variable or default)
    {{ macros.wildocr.partition_url(root, "words", ds) }}    -> <root>/words/dt=2026-03-01

The browser (`wildocr.airflow.browser`) is a FastAPI app the api-server mounts at `/wildocr`, shown as the
"OCR results" entry of the navigation and as a tab of every DAG run. Workers and the dag-processor load
this plugin too (for the macros): the app is built only when the api-server asks for it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin


def output_root() -> str:
    """The output root the DAGs use when no Param overrides it: the Variable, else the embedded default."""
    from airflow.sdk import Variable

    from wildocr.airflow import settings

    return settings.output_root(variable=Variable.get(settings.VAR_OUTPUT_ROOT, default=None))


def partition_url(root: str, table: str, dt: str) -> str:
    """URL of one dt partition of the `images` or `words` table (the storage layer's own rule)."""
    from wildocr.storage.tables import partition_url as _partition_url

    return _partition_url(root, table, dt)


# Relative hrefs: the UI resolves them against its <base href>, so a deployment under a sub-path works.
BROWSER_VIEWS: list[dict[str, Any]] = [
    {
        "name": "OCR results",
        "href": "wildocr/",
        "url_route": "wildocr",
        "destination": "nav",
        "nav_top_level": True,
    },
    {
        "name": "OCR results",
        "href": "wildocr/run?dag_id={DAG_ID}&run_id={RUN_ID}",
        "url_route": "wildocr_run",
        "destination": "dag_run",
    },
]


class WildOcrPlugin(AirflowPlugin):
    name = "wildocr"
    # AirflowPlugin declares these as instance attributes, but the plugin manager reads them off the class.
    macros: ClassVar[list] = [output_root, partition_url]  # type: ignore[misc]
    external_views: ClassVar[list] = BROWSER_VIEWS  # type: ignore[misc]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The browser app, imported on first use (FastAPI, DuckDB and the templates stay off workers)."""
        from wildocr.airflow.browser.app import app
        from wildocr.airflow.browser.links import URL_PREFIX

        return [{"app": app, "url_prefix": URL_PREFIX, "name": "wildocr results browser"}]
