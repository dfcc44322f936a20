"""The task graph both DAGs share: manifest -> mapped group per shard -> finalize.

A mapped *task group* (not four separately mapped tasks) so that the dependencies are per shard: shard 3
can be cropping while shard 7 is still in detection, and a failed shard blocks only its own next steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.sdk import Param, TriggerRule, XComArg, chain, task_group

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


def engine_options_param() -> Param:
    """The `engine_options` Param of the OCR DAGs: flat engine options, checked by the manifest task."""
    return Param(
        {},
        type="object",
        description='Engine options for this run, e.g. {"verify_words": false} for dense small print or '
        '{"det_limit_side": 960}: any flat option of wildocr.engine.EngineConfig (docs/tuning.md). An '
        "unknown key fails the run before any image is read.",
    )


def model_dir_param() -> Param:
    """The `model_dir` Param of the OCR DAGs: a model folder, checked by the manifest task."""
    return Param(
        None,
        type=["null", "string"],
        description="A model folder (manifest.json and fine-tuned ONNX files, docs/models.md) on every "
        f"worker's disk. Unset: Variable {settings.VAR_MODEL_DIR}, else the stock weights. A broken "
        "folder fails the run before any image is read.",
    )


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
    engine_options: Mapping[str, Any] | str | None = None,
    model_dir: str | None = None,
) -> tuple[ManifestOperator, FinalizeOperator]:
    """Create the tasks in the current DAG; arguments are usually `{{ params.x }}` templates."""
    manifest = ManifestOperator(
        task_id=settings.MANIFEST_TASK,
        source_prefix=source_prefix,
        output_root=output_root,
        dt=dt,
        dt_end=dt_end,
        shard_size=shard_size,
        mode=mode,
        skip_done=skip_done,
        skip_seen_content=skip_seen_content,
        engine_options=engine_options,
        model_dir=model_dir,
        conn_id=conn_id,
    )

    @task_group(group_id=settings.OCR_GROUP)
    def ocr(shard: dict[str, Any]) -> None:
        chain(
            TextDetectionOperator(
                task_id=settings.DETECT_TASK, shard=shard, conn_id=conn_id, engine_options=engine_options
            ),
            CropOperator(
                task_id=settings.CROP_TASK, shard=shard, conn_id=conn_id, engine_options=engine_options
            ),
            CtcRecognitionOperator(
                task_id=settings.RECOGNIZE_TASK, shard=shard, conn_id=conn_id, engine_options=engine_options
            ),
            PublishOperator(
                task_id=settings.PUBLISH_TASK, shard=shard, conn_id=conn_id, engine_options=engine_options
            ),
        )

    shards = ocr.expand(shard=manifest.output)
    finalize = FinalizeOperator(
        task_id=settings.FINALIZE_TASK,
        run=XComArg(manifest, key=settings.RUN_XCOM_KEY),
        conn_id=conn_id,
        trigger_rule=TriggerRule.NONE_FAILED,
    )
    shards >> finalize
    return manifest, finalize
