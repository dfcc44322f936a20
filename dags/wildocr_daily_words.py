"""wildocr_daily_words: an example consumer of the `words` table, one run per `dt` partition written.

Scheduled on the `wildocr_words` Asset with `PartitionedAssetTimetable` (Airflow >= 3.2): every
partitioned event that `finalize` of `wildocr_nightly` / `wildocr_backfill` emits (one per dt a run wrote)
creates one run of this DAG whose `partition_key` is that dt. The task reads only that partition and
(re)writes `ROOT/summaries/top_words/dt=<dt>/top_words.parquet`: the day's most frequent words.

The output root comes from the triggering event's extra (where the producer wrote). A manual run (no
partition key) takes the `dt` and `output_root` Params instead, e.g.
`airflow dags trigger wildocr_daily_words -c '{"dt": "2026-03-01"}'`. See docs/airflow.md.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Param, PartitionedAssetTimetable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from wildocr.airflow import settings
from wildocr.airflow.assets import WORDS_ASSET, triggering_partition

with DAG(
    dag_id="wildocr_daily_words",
    schedule=PartitionedAssetTimetable(assets=WORDS_ASSET),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "dt": Param(None, type=["null", "string"], format="date", description="Partition of a manual run."),
        "output_root": Param(
            None,
            type=["null", "string"],
            description=f"Table root of a manual run. Unset: Variable {settings.VAR_OUTPUT_ROOT}, else the "
            "embedded default.",
        ),
        "limit": Param(50, type="integer", minimum=1, description="Words kept per day."),
    },
    tags=["wildocr", "example", "consumer"],
    doc_md=__doc__,
) as dag:

    @task
    def top_words() -> dict[str, Any]:
        """The partition's top words, queried with DuckDB and written as a small Parquet table."""
        from airflow.sdk import Variable

        from wildocr.airflow.hooks import storage_options_for
        from wildocr.storage.summaries import write_top_words

        context = get_current_context()
        params = context["params"]
        dt, extra = triggering_partition(context, WORDS_ASSET)
        dt = dt or params.get("dt")
        if not dt:
            raise AirflowFailException("no partition key (not asset-triggered) and no `dt` Param")
        root = extra.get("output_root") or settings.output_root(
            params.get("output_root"), Variable.get(settings.VAR_OUTPUT_ROOT, default=None)
        )
        figures = extra.get("by_dt", {}).get(dt, {})
        print(f"dt={dt} root={root} producer figures={figures}")
        options = storage_options_for([root])
        return write_top_words(root, dt, limit=int(params["limit"]), storage_options=options)

    top_words()
