"""wildocr_backfill: OCR on historical photos that are not laid out by day (manual runs only).

Give `source_prefix` and the `dt` label the rows get (one partition), or `dt`..`dt_end` with a templated
prefix (`s3://old/{{ ds_nodash }}/`, one partition per date). `skip_done` skips images already read with
the same ETag into another partition, for resuming a large load. For history that *is* laid out by day,
use `airflow backfill create --dag-id wildocr_nightly ...` instead (docs/airflow.md).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from wildocr.airflow import settings
from wildocr.airflow.taskgraph import DEFAULT_ARGS, engine_options_param, model_dir_param, ocr_tasks

with DAG(
    dag_id="wildocr_backfill",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs into the same dt label queue here instead of failing on its lease
    default_args=DEFAULT_ARGS,
    render_template_as_native_obj=True,
    params={
        "source_prefix": Param(
            "",
            type="string",
            minLength=1,
            description="Photos to read (fsspec URL); may use {{ ds }} / {{ ds_nodash }} for a date range.",
        ),
        "dt": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Partition label (YYYY-MM-DD) the rows get; unset: the logical date, else yesterday.",
        ),
        "dt_end": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last date of a range (inclusive); the source prefix must then depend on the date.",
        ),
        "output_root": Param(
            None,
            type=["null", "string"],
            description=f"Table root. Unset: Variable {settings.VAR_OUTPUT_ROOT}, else the embedded default.",
        ),
        "shard_size": Param(
            settings.DEFAULT_SHARD_SIZE, type="integer", minimum=1, description="Images per task."
        ),
        "mode": Param(
            "staged", enum=list(settings.MODES), description="staged: 4 tasks per shard; fused: 1."
        ),
        "skip_done": Param(
            False, type="boolean", description="Skip images already `ok` in other partitions."
        ),
        "skip_seen_content": Param(
            False,
            type="boolean",
            description="Skip OCR of photos whose bytes (SHA-256) were read ok on an earlier date: their "
            "images row says status skipped and duplicate_of names the copy read before.",
        ),
        "engine_options": engine_options_param(),
        "model_dir": model_dir_param(),
    },
    tags=["wildocr", "ocr", "backfill"],
    doc_md=__doc__,
) as dag:
    ocr_tasks(
        source_prefix="{{ params.source_prefix }}",
        output_root="{{ params.output_root }}",
        dt="{{ params.dt }}",
        dt_end="{{ params.dt_end }}",
        shard_size="{{ params.shard_size }}",
        mode="{{ params.mode }}",
        skip_done="{{ params.skip_done }}",
        skip_seen_content="{{ params.skip_seen_content }}",
        engine_options="{{ params.engine_options }}",
        model_dir="{{ params.model_dir }}",
    )
