"""The task graph both DAGs share: manifest -> mapped group per shard -> finalize.

A mapped *task group* (not four separately mapped tasks) so that the dependencies are per shard: shard 3
can be cropping while shard 7 is still in detection, and a failed shard blocks only its own next steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.sdk import TriggerRule, chain, task_group

from wildocr.airflow import settings
from wildocr.airflow.operators import (
    CropOperator,
    CtcRecognitionOperator,
    FinalizeOperator,
    ManifestOperator,
    PublishOperator,
    TextDetectionOperator,
)

# Transient object-store and worker failures: 3 retries after 1, 2, 4 minutes (capped at 15).
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "wildocr",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
}


def ocr_tasks(
    *,
    source_prefix: str | None,
    output_root: str | None,
    dt: str | None,
    dt_end: str | None = None,
    shard_size: int | str = settings.DEFAULT_SHARD_SIZE,
    mode: str = "staged",
    skip_done: bool | str = False,
    skip_seen_content: bool | str = False,
    conn_id: str | None = settings.CONN_ID,
    engine_options: Mapping[str, Any] | None = None,
) -> tuple[ManifestOperator, FinalizeOperator]:
    """Create the tasks in the current DAG; arguments are usually `{{ params.x }}` templates."""
    manifest = ManifestOperator(
        task_id="manifest",
        source_prefix=source_prefix,
        output_root=output_root,
        dt=dt,
        dt_end=dt_end,
        shard_size=shard_size,
        mode=mode,
        skip_done=skip_done,
        skip_seen_content=skip_seen_content,
        conn_id=conn_id,
    )
    step = {"conn_id": conn_id, "engine_options": engine_options}

    @task_group(group_id="ocr")
    def ocr(shard: dict[str, Any]) -> None:
        chain(
            TextDetectionOperator(task_id="detect", shard=shard, **step),
            CropOperator(task_id="crop", shard=shard, **step),
            CtcRecognitionOperator(task_id="recognize", shard=shard, **step),
            PublishOperator(task_id="publish", shard=shard, **step),
        )

    shards = ocr.expand(shard=manifest.output)
    finalize = FinalizeOperator(
        task_id="finalize", run=manifest.output["run"], conn_id=conn_id, trigger_rule=TriggerRule.NONE_FAILED
    )
    shards >> finalize
    return manifest, finalize
