"""URL shapes of the results browser, and the extra link from a shard's publish task to its partition.

Imported by `wildocr.airflow.operators` when DAGs are parsed, so it stays light (no FastAPI, no pyarrow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

URL_PREFIX = "/wildocr"  # where the api-server mounts the app (not one of Airflow's reserved prefixes)


def partition_path(dt: str, shard: int | None = None) -> str:
    """Path (below the api-server's base URL) of a partition's page, optionally showing one shard."""
    from wildocr.storage.tables import validate_dt, validate_shard

    query = "" if shard is None else "?" + urlencode({"shard": validate_shard(shard)})
    return f"{URL_PREFIX}/dt/{validate_dt(dt)}{query}"


def api_base_url() -> str:
    """`[api] base_url` without its trailing slash ('' when unset: links are then root-relative)."""
    from airflow.sdk import conf

    return (conf.get("api", "base_url", fallback="") or "").rstrip("/")


class PartitionBrowserLink(BaseOperatorLink):
    """'OCR results' on a shard's publish task: its `dt` partition in the browser, filtered to the shard.

    Resolved by the worker when the task ends (Airflow 3 stores the URL as an XCom), from the task's
    rendered `shard` spec, so it needs no database or storage access.
    """

    name = "OCR results"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        spec: Any = getattr(operator, "shard", None)
        if not isinstance(spec, dict) or "dt" not in spec:
            return ""  # not rendered (the task failed before it started): no link rather than a wrong one
        shard = spec.get("shard")
        return api_base_url() + partition_path(str(spec["dt"]), None if shard is None else int(shard))
