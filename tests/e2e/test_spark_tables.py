"""Spark reads the tables for real: include/sql/spark_tables.sql over real output, then the examples.

Two daily partitions are made by the real pipeline (`process_shard`) on generated photos; a local PySpark
session (local[1], small heap, no UI, loopback only) creates the tables from the shipped DDL, pointed at
that output instead of s3a://, registers the partitions with the DDL's own MSCK REPAIR, runs every query of
include/sql/spark_examples.sql and compares it with the DuckDB example of the same name.

Needs Java 17 (`java` on PATH; .ci/run installs openjdk-17-jre-headless when it is missing). Without Java
the test skips locally and fails in CI.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import DAYS, connect, named_queries

SQL_DIR = Path(__file__).resolve().parents[2] / "include" / "sql"
DDL_ROOT = "s3a://wildocr-lake/ocr"  # the placeholder root in spark_tables.sql

pytestmark = pytest.mark.slow

if shutil.which("java") is None:
    if os.environ.get("CI"):
        raise RuntimeError("java is missing: .ci/run installs openjdk-17-jre-headless")
    pytest.skip("no java on PATH (install openjdk-17-jre-headless)", allow_module_level=True)


@pytest.fixture(scope="module")
def spark(tmp_path_factory) -> Iterator:
    from pyspark.sql import SparkSession

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its __del__ logs at exit, after logging closed
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("wildocr-tests")
        .config("spark.driver.memory", "512m")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def statements(sql: str) -> list[str]:
    """The statements of a SQL file, comments dropped."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


@pytest.fixture(scope="module")
def spark_tables(spark, output_root):
    ddl = (SQL_DIR / "spark_tables.sql").read_text()
    assert DDL_ROOT in ddl
    for statement in statements(ddl.replace(DDL_ROOT, Path(output_root).as_uri())):
        spark.sql(statement)
    return spark


def _rows(df) -> list[dict]:
    return [row.asDict() for row in df.collect()]


def test_spark_ddl_reads_both_partitions_like_duckdb(spark_tables, output_root) -> None:
    spark = spark_tables
    partitions = [r["partition"] for r in _rows(spark.sql("SHOW PARTITIONS wildocr.words"))]
    assert partitions == [f"dt={d}" for d in DAYS]
    con = connect(output_root)
    for table in ("images", "words"):
        spark_counts = _rows(
            spark.sql(f"SELECT dt, count(*) AS n FROM wildocr.{table} GROUP BY dt ORDER BY dt")
        )
        duck_counts = con.sql(f"SELECT dt, count(*) FROM {table} GROUP BY dt ORDER BY dt").fetchall()
        assert [(r["dt"], r["n"]) for r in spark_counts] == [(str(d), n) for d, n in duck_counts]
        assert sum(n for _, n in duck_counts) > 0
    # every column typed as the DDL says, read from the files without a cast error
    (row,) = _rows(
        spark.sql(
            "SELECT max(processed_at) AS t, sum(size) AS s, max(confidence) AS c "
            "FROM wildocr.images JOIN wildocr.words USING (dt, image_uri)"
        )
    )
    assert row["t"] is not None and row["s"] > 0 and 0 < row["c"] <= 1


def test_every_spark_example_matches_duckdb(spark_tables, output_root) -> None:
    spark = spark_tables
    con = connect(output_root)
    duck = named_queries(SQL_DIR / "duckdb_examples.sql")
    examples = named_queries(SQL_DIR / "spark_examples.sql")
    assert set(examples) <= set(duck) and len(examples) >= 5

    def duckdb_rows(name: str) -> list[dict]:
        rel = con.sql(duck[name])
        return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]

    for name, sql in examples.items():
        got = _rows(spark.sql(sql))
        want = duckdb_rows(name)
        assert got, f"{name} returned no rows"
        assert len(got) == len(want), name
        keys = {
            "daily_summary": ("dt", "images", "ok", "errors", "words"),
            "errors": ("dt", "image_uri", "size", "error"),
            "top_words": ("word", "occurrences", "images"),
            "image_text": ("dt", "image_uri", "text", "lines"),
            "latest_row_per_image": ("image_uri", "etag", "dt", "status", "n_words"),
        }[name]
        norm = [{k: str(r[k]) if k == "dt" else r[k] for k in keys} for r in got]
        assert norm == [{k: str(r[k]) if k == "dt" else r[k] for k in keys} for r in want], name
    top = _rows(spark.sql(examples["top_words"]))[0]
    assert re.fullmatch(r"\S+", top["word"]) and top["occurrences"] >= 1
