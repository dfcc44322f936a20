"""The wildocr demo: sample photos in, the nightly Airflow DAG run for their date, the tables queried out.

    python include/demo.py [--date 2026-03-01] [--count 6] [--seed 0] [--mode staged|fused] [--hard]

Everything stays in the repository, in git-ignored folders, using the embedded default of the DAGs:
  ./data/photos/<date>/   the generated photos (+ one deliberately corrupt file; add your own photos here)
  ./data/ocr/             the tables: images/dt=<date>/part-*.parquet, words/dt=<date>/part-*.parquet
  ./airflow_home/         Airflow's SQLite metadata database and logs
The run is a real Airflow run (`dag.test()`: the scheduler's dependency loop in this process, no
executor), so it needs no running services. Run it again: the partition is replaced, not appended to.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _configure_environment(verbose: bool) -> None:
    """Point Airflow at ./airflow_home and the DAGs at ./data, before anything imports airflow."""
    os.environ["AIRFLOW_HOME"] = str(ROOT / "airflow_home")
    os.environ["WILDOCR_HOME"] = str(ROOT / "data")  # what the default rule gives too; explicit here
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)  # default: SQLite in AIRFLOW_HOME
    if not verbose:
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    (ROOT / "airflow_home").mkdir(exist_ok=True)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", default=yesterday, help="data date (the run's ds); default: yesterday UTC")
    parser.add_argument("--count", type=int, default=6, help="sample photos to generate (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hard", action="store_true", help="smaller, fainter, more cluttered text")
    parser.add_argument("--mode", choices=("staged", "fused"), default="staged")
    parser.add_argument("--shard-size", type=int, default=4, help="images per task (default 4: 2+ shards)")
    parser.add_argument("--verbose", action="store_true", help="show Airflow's and the tasks' INFO logs")
    args = parser.parse_args(argv)
    day = dt.date.fromisoformat(args.date).isoformat()

    _configure_environment(args.verbose)
    import duckdb
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    from include.sample_data import generate
    from wildocr.airflow import settings

    photos = settings.wildocr_home() / "photos" / day
    output_root = settings.default_output_root()
    print(f"1/4 generating {args.count} sample photos in {photos.relative_to(ROOT)}/")
    for stale in photos.glob("sample_*"):  # an earlier, larger --count; photos of your own stay and are read
        stale.unlink()
    generate(str(photos), count=args.count, seed=args.seed, hard=args.hard)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 deliberately not a JPEG")  # shows an error row

    print(f"2/4 Airflow metadata database in {Path(os.environ['AIRFLOW_HOME']).relative_to(ROOT)}/ (SQLite)")
    db.initdb()  # creates or migrates; keeps earlier runs
    _ensure_gpu_pool()

    print(f"3/4 running DAG wildocr_nightly for ds={day} (mode={args.mode}, shard_size={args.shard_size})")
    bag = DagBag(dag_folder=str(ROOT / "dags" / "wildocr_nightly.py"))
    if bag.import_errors:
        print(bag.import_errors, file=sys.stderr)
        return 1
    start = time.perf_counter()
    run = bag.dags["wildocr_nightly"].test(
        logical_date=pendulum.datetime(*map(int, day.split("-")), 2, tz="UTC"),
        run_conf={"mode": args.mode, "shard_size": args.shard_size},
    )
    tis = sorted(run.get_task_instances(), key=lambda ti: (ti.task_id, ti.map_index))
    print(f"    run {run.run_id}: {run.state} in {time.perf_counter() - start:.1f} s")
    for ti in tis:
        name = f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id
        print(f"      {name:<18} {ti.state}")
    if run.state != "success":
        print("the run failed; rerun with --verbose to see the task logs", file=sys.stderr)
        return 1

    print(f"4/4 the tables under {Path(output_root).relative_to(ROOT)}/, queried with DuckDB:")
    con = duckdb.connect()
    con.execute("SET VARIABLE wildocr_root = ?", [output_root])
    con.execute((ROOT / "include" / "sql" / "duckdb_views.sql").read_text())
    con.sql(
        """
        SELECT regexp_extract(i.image_uri, '[^/]+$') AS image, i.status, i.n_words AS words,
               coalesce(left(t.text, 70), i.error) AS "first words (or the error)"
        FROM images AS i
        LEFT JOIN (SELECT image_uri, string_agg(text, ' ' ORDER BY word_index) AS text
                   FROM words GROUP BY image_uri) AS t USING (image_uri)
        WHERE i.dt = ?::DATE
        ORDER BY image
        """,
        params=[day],
    ).show(max_width=160)
    print(
        f"Ground truth: {photos.relative_to(ROOT)}/ground_truth.jsonl. More: include/sql/duckdb_examples.sql"
        "\n"
        f'Same tables from the DuckDB CLI (installed separately): duckdb -c "SET VARIABLE wildocr_root = '
        f'\'{output_root}\'" -c ".read include/sql/duckdb_views.sql" -c "FROM images"'
    )
    return 0


def _ensure_gpu_pool() -> None:
    """The `gpu` pool the GPU tasks use (dag.test ignores pools; a scheduler on this home would not)."""
    from airflow.models.pool import Pool

    from wildocr.airflow import settings

    if Pool.get_pool(settings.GPU_POOL) is None:
        Pool.create_or_update_pool(
            settings.GPU_POOL, slots=1, description="one slot per GPU", include_deferred=False
        )


if __name__ == "__main__":
    sys.exit(main())
