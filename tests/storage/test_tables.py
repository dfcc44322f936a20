"""The SQL shipped in include/sql: DuckDB examples run against real OCR output; the Athena, Trino and
Spark DDL declare exactly the columns and types of the schemas in wildocr.storage.tables."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import DAYS, _sample_tables, connect, named_queries
from wildocr.pipeline import outputs
from wildocr.samples import sample_exif
from wildocr.storage import tables

SQL_DIR = Path(__file__).resolve().parents[2] / "include" / "sql"


def test_every_duckdb_example_runs_on_real_output(output_root):
    con = connect(output_root)
    queries = named_queries(SQL_DIR / "duckdb_examples.sql")
    assert len(queries) >= 6
    top = con.sql(queries["top_words"]).fetchall()[0]
    con.execute(f"SET VARIABLE wildocr_search = '{top[0]}'")  # search_text looks for the commonest word
    results = {}
    for name, sql in queries.items():
        rel = con.sql(sql)
        results[name] = [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
        assert results[name], f"{name} returned no rows"

    summary = results["daily_summary"]
    assert [str(r["dt"]) for r in summary] == list(DAYS)
    assert sum(r["images"] for r in summary) == 6 and sum(r["errors"] for r in summary) == 1
    assert results["errors"][0]["image_uri"].endswith("zz_broken.jpg")
    with_words = con.sql("SELECT count(*) FROM images WHERE n_words > 0").fetchall()[0][0]
    assert len(results["image_text"]) == with_words >= 4 and len(results["latest_row_per_image"]) == 6
    total_words = con.sql("SELECT count(*) FROM words").fetchall()[0][0]
    assert sum(r["words"] for r in summary) == total_words > 0

    # search_text finds the word top_words reports, in as many places as it occurs
    assert len(results["search_text"]) == results["top_words"][0]["occurrences"]
    assert {r["text"].lower() for r in results["search_text"]} == {results["top_words"][0]["word"]}

    # photo metadata, hashes and scripts
    near = results["words_near_point"]  # default point: 10 m from sample_0000's GPS position
    assert {r["image_uri"].rsplit("/", 1)[-1] for r in near} == {"sample_0000.jpg", "sample_0000_copy.jpg"}
    assert all(r["metres"] < 50 for r in near) and len(near) == 2 * image_words(con, "sample_0000.jpg")
    cameras = {(r["camera_make"], r["camera_model"]): r["photos"] for r in results["words_per_camera"]}
    assert cameras[("Canon", "Canon EOS R5")] == 2 and cameras[("Apple", "iPhone 15 Pro")] == 1
    assert cameras[(None, None)] == 2  # the PNG and the odd JPEG
    hours = {r["local_hour"]: r["photos"] for r in results["photos_per_local_hour"]}
    assert hours == count_by(sample_exif(21, i).taken_at.hour for i in (0, 0, 1))
    assert sum(r["without_utc_offset"] for r in results["photos_per_local_hour"]) == 2  # sample 0 twice
    assert {r["orientation"]: r["photos"] for r in results["turned_photos"]} == {None: 2, 1: 2, 6: 1}
    day1 = results["duplicates_per_day"][0]
    assert (day1["photos"], day1["distinct_contents"], day1["duplicates"]) == (3, 2, 1)
    assert [(r["copies"], r["days"]) for r in results["seen_before"]] == [(2, 1)]
    scripts = {r["script"]: r["words"] for r in results["words_per_script"]}
    assert sum(scripts.values()) == total_words and scripts["Latin"] > total_words / 2
    assert [r["image_uri"].rsplit("/", 1)[-1] for r in results["metadata_warnings"]] == ["zz_odd_exif.jpg"]
    assert "orientation 9" in results["metadata_warnings"][0]["metadata_warnings"]


def image_words(con: duckdb.DuckDBPyConnection, name: str) -> int:
    return con.sql(f"SELECT n_words FROM images WHERE image_uri LIKE '%/{name}'").fetchall()[0][0]


def count_by(values) -> dict:
    out: dict = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def test_duckdb_views_type_the_columns_like_the_schemas(output_root):
    con = connect(output_root)
    expected = {
        pa.string(): "VARCHAR",
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.float64(): "DOUBLE",
        pa.float32(): "FLOAT",
        pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
        pa.bool_(): "BOOLEAN",
    }
    for name, schema in tables.OUTPUT_SCHEMAS.items():
        described = {row[0]: row[1] for row in con.sql(f"DESCRIBE {name}").fetchall()}
        assert described == {**{f.name: expected[f.type] for f in schema}, "dt": "DATE"}


# DDL for the other engines ---------------------------------------------------------------------------

DIALECTS = {
    "athena_tables.sql": {
        "string": "string",
        "int64": "bigint",
        "int32": "int",
        "double": "double",
        "float": "float",
        "timestamp[us, tz=UTC]": "timestamp",
        "bool": "boolean",
    },
    "trino_tables.sql": {
        "string": "varchar",
        "int64": "bigint",
        "int32": "integer",
        "double": "double",
        "float": "real",
        "timestamp[us, tz=UTC]": "timestamp",
        "bool": "boolean",
    },
    "spark_tables.sql": {
        "string": "string",
        "int64": "bigint",
        "int32": "int",
        "double": "double",
        "float": "float",
        "timestamp[us, tz=UTC]": "timestamp",
        "bool": "boolean",
    },
}


def ddl_columns(sql: str) -> dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """table -> (columns, PARTITIONED BY columns-with-types) of each CREATE TABLE statement."""
    out = {}
    pattern = r"CREATE (?:EXTERNAL )?TABLE IF NOT EXISTS (?:\w+\.)*(\w+) \((.*?)\n\)(.*?);"
    for match in re.finditer(pattern, sql, re.S):
        columns = [tuple(c.strip().lower().split()) for c in match.group(2).split(",\n") if c.strip()]
        partitioned = re.search(r"PARTITIONED BY \(([^)]*)\)", match.group(3))
        parts = (
            [tuple(p.strip().lower().split()) for p in partitioned.group(1).split(",")] if partitioned else []
        )
        out[match.group(1)] = (columns, parts)
    return out


@pytest.mark.parametrize("filename", sorted(DIALECTS))
def test_ddl_matches_the_schemas(filename):
    types = DIALECTS[filename]
    found = ddl_columns((SQL_DIR / filename).read_text())
    assert sorted(found) == sorted(tables.OUTPUT_SCHEMAS)
    for name, schema in tables.OUTPUT_SCHEMAS.items():
        columns, partitioned = found[name]
        want = [(f.name, types[str(f.type)]) for f in schema]
        if filename == "athena_tables.sql":  # Hive DDL: the partition key is declared apart
            assert columns == want and partitioned == [("dt", "string")]
        else:  # Trino and Spark list the partition column last, among the columns
            assert columns == [*want, ("dt", "varchar" if filename.startswith("trino") else "string")]


@pytest.mark.parametrize("filename", sorted(DIALECTS))
def test_ddl_points_each_table_at_its_own_folder(filename):
    sql = (SQL_DIR / filename).read_text()
    for name in tables.OUTPUT_SCHEMAS:
        block = re.search(rf"TABLE IF NOT EXISTS (?:\w+\.)*{name} \(.*?;", sql, re.S).group(0)
        locations = re.findall(r"(?:LOCATION|external_location =) '([^']+)'", block)
        assert len(locations) == 1 and locations[0].rstrip("/").endswith(f"/ocr/{name}")


def test_part_urls_are_pure_and_validated():
    assert (
        tables.part_url("s3://b/ocr/", "words", "2026-11-24", 3)
        == "s3://b/ocr/words/dt=2026-11-24/part-00003.parquet"
    )
    assert tables.part_url("/x", "images", "2026-11-24", 3) == tables.part_url(
        "/x", "images", "2026-11-24", 3
    )
    for bad_dt in ("2026-13-01", "2026-1-1", "../../etc", "2026-11-24/../x", "", "20261124"):
        with pytest.raises(ValueError):
            tables.part_url("/x", "words", bad_dt, 0)
    for bad_shard in (-1, True, "3", 1.0):
        with pytest.raises(ValueError):
            tables.part_url("/x", "words", "2026-11-24", bad_shard)
    with pytest.raises(ValueError):
        tables.part_url("/x", "secrets", "2026-11-24", 0)
    assert tables.parse_part_name("part-00012.parquet") == 12
    assert tables.parse_part_name(".part-00012.parquet.abc.tmp") is None


def test_schemas_use_types_every_engine_reads():
    for schema in tables.OUTPUT_SCHEMAS.values():
        for f in schema:
            assert not pa.types.is_unsigned_integer(f.type), f.name
            assert not pa.types.is_nested(f.type), f.name  # flat columns for Athena/Trino/Spark
            assert f.name != "dt"  # the partition column lives in the directory name only
    assert tables.IMAGES.field("processed_at").type == pa.timestamp("us", tz="UTC")


def test_rows_and_parquet_settings():
    images, words = _sample_tables()
    assert images["status"].to_pylist() == ["ok", "error"]
    assert images["width"].to_pylist() == [100, None]
    with pytest.raises(ValueError):
        tables.to_table(tables.IMAGES, [{"image_uri": "x"}])
    data = tables.parquet_bytes(words)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    columns = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i)
        for i in range(meta.num_columns)
    }
    assert "RLE_DICTIONARY" in columns["text"].encodings
    assert b"pandas" not in (pq.read_schema(io.BytesIO(data)).metadata or {})
    parquet_schema = pq.ParquetFile(io.BytesIO(tables.parquet_bytes(images))).schema
    ts = parquet_schema.column(parquet_schema.names.index("processed_at"))
    logical = json.loads(ts.logical_type.to_json())
    assert ts.name == "processed_at" and ts.physical_type == "INT64"
    assert (logical["Type"], logical["isAdjustedToUTC"], logical["timeUnit"]) == (
        "Timestamp",
        True,
        "microseconds",
    )
    back = tables.read_parquet_bytes(tables.parquet_bytes(images), tables.IMAGES)
    assert back.to_pylist() == images.to_pylist()


def test_duckdb_reads_hive_partitions_without_conflict(tmp_path):
    root = str(tmp_path / "ocr")
    for day, shard_no in (("2026-11-23", 0), ("2026-11-24", 0), ("2026-11-24", 1)):
        images, words = _sample_tables(shard_no)
        outputs.write_outputs(root, day, shard_no, images, words, n_shards=2)
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT dt, shard, count(*) FROM read_parquet('{root}/words/*/*.parquet', hive_partitioning=true) "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert rows == [
        (dt.date(2026, 11, 23), 0, 1),
        (dt.date(2026, 11, 24), 0, 1),
        (dt.date(2026, 11, 24), 1, 1),
    ]
    ts = con.sql(
        f"SELECT typeof(processed_at) FROM read_parquet('{root}/images/*/*.parquet') LIMIT 1"
    ).fetchall()[0]
    assert ts == ("TIMESTAMP WITH TIME ZONE",)


def test_table_builder_holds_blocks_of_arrow_and_gives_the_same_table():
    from wildocr.engine.types import Word

    def words(n: int) -> list[Word]:
        return [
            Word(f"w{i}", 0.9, 0.8, i, ((0, 0), (10, 0), (10, 5), (0, 5)), (0, 0, 10, 5)) for i in range(n)
        ]

    rows = [tables.word_rows(f"s3://b/{k}.jpg", words(k % 7), 3) for k in range(40)]
    builder = tables.TableBuilder(tables.WORDS, block=16)
    for image_rows in rows:
        builder.extend(image_rows)
        assert len(builder._rows) < 16  # full blocks are Arrow already, never dicts
    expected = tables.to_table(tables.WORDS, [r for image_rows in rows for r in image_rows])
    assert builder.table().equals(expected) and builder.table().num_rows == expected.num_rows > 100
    assert tables.TableBuilder(tables.WORDS).table().schema == tables.WORDS  # empty shard: empty table
