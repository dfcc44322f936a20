"""wildocr_nightly: OCR on the photos of one day, every day at 02:00 UTC.

The run for data date D (its `ds`) fires on D+1 at 02:00, reads `wildocr_source_prefix` rendered for D
(e.g. `s3://wildocr-photos/incoming/{{ ds }}/`) and replaces partition `dt=D` of the `images` and `words`
tables under `wildocr_output_root`. Safe under `airflow backfill create` and reruns: each run writes only
its own partition, with file names that depend only on (table, dt, shard).

Params (all optional) override the Variables for one run; `dt` picks the date of a manual run that has no
logical date (default: yesterday, UTC). See docs/airflow.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from wildocr.airflow import settings
from wildocr.airflow.taskgraph import DEFAULT_ARGS, engine_options_param, model_dir_param, ocr_tasks

with DAG(
    dag_id="wildocr_nightly",
    # A data-interval timetable (not the Airflow 3 default CronTriggerTimetable) so that `ds` is the day
    # whose photos are read: the run firing 2026-03-02 02:00 has ds=2026-03-01.
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,  # history goes through `airflow backfill create`
    max_active_runs=4,  # dates are independent; the gpu pool bounds the GPU load anyway
    default_args=DEFAULT_ARGS,
    render_template_as_native_obj=True,  # Params arrive typed (int shard_size, None when unset)
    params={
        "source_prefix": Param(
            None,
            type=["null", "string"],
            description="Photos to read; a template ({{ ds }} = the data date). Unset: Variable "
            f"{settings.VAR_SOURCE_PREFIX}, else the embedded default.",
        ),
        "output_root": Param(
            None,
            type=["null", "string"],
            description=f"Table root. Unset: Variable {settings.VAR_OUTPUT_ROOT}, else the embedded default.",
        ),
        "dt": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Data date of a manual run without logical date (default: yesterday, UTC).",
        ),
        "shard_size": Param(
            settings.DEFAULT_SHARD_SIZE, type="integer", minimum=1, description="Images per task."
        ),
        "mode": Param(
            "staged", enum=list(settings.MODES), description="staged: 4 tasks per shard; fused: 1."
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
    tags=["wildocr", "ocr"],
    doc_md=__doc__,
) as dag:
    ocr_tasks(
        source_prefix="{{ params.source_prefix }}",
        output_root="{{ params.output_root }}",
        dt="{{ params.dt }}",
        shard_size="{{ params.shard_size }}",
        mode="{{ params.mode }}",
        skip_seen_content="{{ params.skip_seen_content }}",
        engine_options="{{ params.engine_options }}",
        model_dir="{{ params.model_dir }}",
    )
