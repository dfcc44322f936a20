"""OpenLineage events and partitioned Asset events of real runs, and the example consumer DAG end to end.

- Lineage: `dag.test()` of `wildocr_nightly` with the OpenLineage provider's file transport (configured in
  conftest.py through AIRFLOW__OPENLINEAGE__TRANSPORT); the events are read back from the file and checked
  against the tables DuckDB reads and the part files on disk.
- Partitions: `wildocr_backfill` over two dates emits one partitioned event per (table, dt); the scheduler's
  own code (`SchedulerJobRunner._create_dagruns_for_partitioned_asset_dags`) turns them into one
  `wildocr_daily_words` run per dt, with the dt as `partition_key`. Those runs are executed in-process as
  `dag.test()` does (dag.test() itself cannot create a run with a partition key), and each must write the
  top words of its own partition only.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pendulum
import pyarrow.parquet as pq
import pytest

from include.sample_data import generate
from wildocr.storage import tables

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# the file transport's file, set up by tests/conftest.py (not imported: pytest loads it as `conftest`)
OPENLINEAGE_FILE = Path(json.loads(os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"])["log_file_path"])


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def _test_run(dag_id: str, logical_date: pendulum.DateTime | None, conf: dict[str, Any]):
    dr = _dag(dag_id).test(logical_date=logical_date, run_conf=conf)
    states = {(ti.task_id, ti.map_index): ti.state for ti in dr.get_task_instances()}
    assert dr.state == "success", states
    return dr, states


def _rows(sql: str) -> list[dict]:
    rel = duckdb.sql(sql)
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


# --- OpenLineage -------------------------------------------------------------------------------------------


def _events(run_id: str, timeout: float = 30.0) -> list[dict]:
    """COMPLETE events of one DAG run's tasks from the file transport (emitted in threads: wait for them)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = OPENLINEAGE_FILE.read_text().splitlines() if OPENLINEAGE_FILE.exists() else []
        events = [json.loads(line) for line in lines if line.strip()]
        mine = [
            e
            for e in events
            if e["eventType"] == "COMPLETE"
            and e["run"]["facets"].get("airflow", {}).get("dagRun", {}).get("run_id") == run_id
        ]
        tasks = {(e["job"]["name"], _map_index(e)) for e in mine}
        if ("wildocr_nightly.finalize", -1) in tasks or time.monotonic() > deadline:
            return mine
        time.sleep(0.5)


def _map_index(event: dict) -> int:
    return event["run"]["facets"]["airflow"]["taskInstance"].get("map_index", -1)


def test_lineage_events_of_a_staged_run(wildocr_home: Path) -> None:
    """Manifest: the prefix in; each publish: prefix in, both tables out with schema, stats, dt, quality."""
    day = "2026-04-01"
    photos = wildocr_home / "photos" / day
    generate(str(photos), count=3, seed=31)
    (photos / "zz_broken.jpg").write_bytes(b"not a photo at all")
    root = wildocr_home / "ocr"

    dr, _ = _test_run("wildocr_nightly", pendulum.datetime(2026, 4, 1, 2, tz="UTC"), {"shard_size": 2})
    events = _events(dr.run_id)
    by_task = {(e["job"]["name"], _map_index(e)): e for e in events}
    assert ("wildocr_nightly.manifest", -1) in by_task, sorted(by_task)

    prefix = {"namespace": "file", "name": f"{photos}/"}
    manifest = by_task[("wildocr_nightly.manifest", -1)]
    assert [{k: d[k] for k in ("namespace", "name")} for d in manifest["inputs"]] == [prefix]
    assert manifest["outputs"] == []

    # one dataset per prefix everywhere, never one per photo
    assert all(len(e["inputs"]) <= 1 for e in events)
    for step in ("detect", "crop", "recognize"):
        for shard in (0, 1):
            assert by_task[(f"wildocr_nightly.ocr.{step}", shard)]["outputs"] == []

    totals: Counter = Counter()
    for shard in (0, 1):
        event = by_task[("wildocr_nightly.ocr.publish", shard)]
        assert [{k: d[k] for k in ("namespace", "name")} for d in event["inputs"]] == [prefix]
        outputs = {d["name"]: d for d in event["outputs"]}
        assert set(outputs) == {f"{root}/images", f"{root}/words"}
        for table in tables.TABLES:
            out = outputs[f"{root}/{table}"]
            assert out["namespace"] == "file"
            fields = [f["name"] for f in out["facets"]["schema"]["fields"]]
            assert fields == [*tables.OUTPUT_SCHEMAS[table].names, "dt"]
            assert out["facets"]["storage"]["fileFormat"] == "parquet"
            stats = out["outputFacets"]["outputStatistics"]
            part = root / table / f"dt={day}" / tables.part_name(shard)
            assert stats["fileCount"] == 1 and stats["size"] == part.stat().st_size
            assert stats["rowCount"] == pq.read_metadata(part).num_rows
            condition = out["outputFacets"]["subset"]["outputCondition"]
            assert condition["type"] == "partition"
            assert [p["dimensions"] for p in condition["partitions"]] == [{"dt": day}]
            quality = out["facets"]["dataQualityMetrics"]
            assert quality["rowCount"] == stats["rowCount"] and quality["bytes"] == stats["size"]
            totals[table] += stats["rowCount"]
        metrics = outputs[f"{root}/images"]["facets"]["dataQualityMetrics"]["columnMetrics"]
        totals["errors"] += metrics["error"]["count"]
        totals["ok"] += metrics["error"]["nullCount"]
        totals["n_words"] += metrics["n_words"]["sum"]

    glob = f"{root}/{{t}}/dt={day}/*.parquet"
    (db,) = _rows(
        f"SELECT count(*) AS images, count(*) FILTER (WHERE status = 'error') AS errors, "
        f"count(*) FILTER (WHERE status = 'ok') AS ok, sum(n_words) AS n_words "
        f"FROM read_parquet('{glob.format(t='images')}')"
    )
    words = _rows(f"SELECT count(*) AS n FROM read_parquet('{glob.format(t='words')}')")[0]["n"]
    assert totals == Counter(images=db["images"], words=words, errors=1, ok=db["ok"], n_words=words)
    assert db["errors"] == 1 and words > 0


def test_dataset_names_follow_the_openlineage_naming_spec() -> None:
    from wildocr.airflow.lineage import dataset_name

    assert dataset_name("s3://photos/incoming/2026-03-01/") == ("s3://photos", "incoming/2026-03-01/")
    assert dataset_name("s3a://lake/ocr/words") == ("s3://lake", "ocr/words")
    assert dataset_name("/data/photos/") == ("file", "/data/photos/")
    assert dataset_name("file:///data/photos/") == ("file", "/data/photos/")
    assert dataset_name("file://nas01/data/photos/") == ("file://nas01", "/data/photos/")


# --- partitioned asset events and the consumer DAG ---------------------------------------------------------


def _run_existing(dag_id: str, run_id: str) -> dict[str, str]:
    """Execute the tasks of a DagRun the scheduler created, in-process, the way dag.test() runs its own."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    dag = _dag(dag_id)
    with create_session() as session:
        dr = session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one()
        dr.dag = DBDagBag().get_dag_for_run(dr, session=session)
        dr.state = DagRunState.RUNNING
        session.commit()
        while dr.state == DagRunState.RUNNING:
            session.expire_all()
            schedulable, _ = dr.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in dr.get_task_instances(session=session):
                if ti.state == TaskInstanceState.SCHEDULED:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id])
        return {ti.task_id: ti.state for ti in dr.get_task_instances(session=session)} | {"": dr.state}


def test_partition_events_trigger_one_consumer_run_per_dt(tmp_path: Path) -> None:
    """Two dates in one producer run: two partitioned events per table, two consumer runs, own dt each."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    days = ["2026-05-01", "2026-05-02"]
    for i, day in enumerate(days):
        generate(str(tmp_path / "in" / day.replace("-", "")), count=2, seed=41 + i)
    (tmp_path / "in" / "20260502" / "zz_broken.jpg").write_bytes(b"broken")
    root = tmp_path / "lake"
    conf = {
        "source_prefix": f"{tmp_path}/in/{{{{ ds_nodash }}}}/",
        "dt": days[0],
        "dt_end": days[1],
        "output_root": str(root),
        "mode": "fused",
    }

    def create_partition_runs() -> set[str]:
        """The scheduler's own step that turns pending partitioned events into partition-keyed runs."""
        with create_session() as session:
            return SchedulerJobRunner(job=Job())._create_dagruns_for_partitioned_asset_dags(session)

    create_partition_runs()  # runs owed to events of earlier tests in this session: not this test's
    with create_session() as session:
        before = {r.run_id for r in session.query(DagRun).filter(DagRun.dag_id == "wildocr_daily_words")}
    producer, _ = _test_run("wildocr_backfill", None, conf)

    glob = f"{root}/{{t}}/*/*.parquet"
    images = _rows(f"SELECT * FROM read_parquet('{glob.format(t='images')}', hive_partitioning = true)")
    words = _rows(f"SELECT * FROM read_parquet('{glob.format(t='words')}', hive_partitioning = true)")
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == producer.run_id).all()
        got = {(e.asset.name, e.partition_key): e.extra for e in events}
    assert sorted(got) == sorted((a, d) for a in ("wildocr_images", "wildocr_words") for d in days)
    for (asset, day), extra in got.items():
        assert extra["mode"] == "fused" and extra["output_root"] == str(root) and extra["dts"] == days
        figures = extra["by_dt"][day]
        mine = [r for r in images if str(r["dt"])[:10] == day]
        assert figures["images"] == len(mine)
        assert figures["errors"] == sum(r["status"] == "error" for r in mine) == (day == days[1])
        assert figures["ok"] == sum(r["status"] == "ok" for r in mine)
        assert figures["words"] == sum(str(r["dt"])[:10] == day for r in words) > 0
        assert figures["partition"] == f"{root}/{asset.removeprefix('wildocr_')}/dt={day}"
        assert extra["models"]["det_sha256"] == images[0]["det_sha256"]
        assert extra["models"]["rec_sha256"] == images[0]["rec_sha256"]
        assert extra["words"] == len(words) and extra["errors"] == 1

    assert create_partition_runs() == {"wildocr_daily_words"}
    with create_session() as session:
        new_runs = [
            dr
            for dr in session.query(DagRun).filter(DagRun.dag_id == "wildocr_daily_words").all()
            if dr.run_id not in before
        ]
        runs = {dr.partition_key: dr.run_id for dr in new_runs}
    assert len(new_runs) == 2 and sorted(runs) == days  # one consumer run per dt, keyed by it

    for day in days:
        states = _run_existing("wildocr_daily_words", runs[day])
        assert states == {"top_words": "success", "": "success"}, states
        summary = pq.read_table(root / "summaries" / "top_words" / f"dt={day}" / "top_words.parquet")
        expected = _rows(
            "SELECT lower(text) AS word, count(*) AS occurrences FROM read_parquet("
            f"'{root}/words/dt={day}/*.parquet') GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50"
        )
        assert [(r["word"], r["occurrences"]) for r in summary.to_pylist()] == [
            (r["word"], r["occurrences"]) for r in expected
        ]
