"""Object storage, manifests, table schemas and atomic writes: everything below the OCR engine."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import random
import threading

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wildocr.pipeline import loader, shard
from wildocr.storage import manifest, objectstore, tables
from wildocr.storage.objectstore import ObjectInfo

pytest_plugins = ["tests.s3server"]

MODELS = {"det_model": "det.onnx", "det_sha256": "a" * 64, "rec_model": "rec.onnx", "rec_sha256": "b" * 64}
SOURCE_NAMES = [
    "a.JPG",
    "b.jpeg",
    "c.png",
    "notes.txt",
    "sub/e.webp",
    "sub/f.TIFF",
    "sub/deeper/g.bmp",
    "h.gif",
]
IMAGE_NAMES = ["a.JPG", "b.jpeg", "c.png", "sub/deeper/g.bmp", "sub/e.webp", "sub/f.TIFF"]


def _fill_local(root) -> None:
    for name in SOURCE_NAMES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


# Listing ----------------------------------------------------------------------------------------------


def test_list_local_filters_extensions_case_insensitively(tmp_path):
    _fill_local(tmp_path)
    listing = objectstore.list_images(str(tmp_path))
    assert [o.uri for o in listing.images] == sorted(f"file://{tmp_path}/{n}" for n in IMAGE_NAMES)
    assert listing.skipped == 2  # notes.txt, h.gif
    assert all(o.size == len(o.uri.rsplit("/", 1)[-1]) or o.size > 0 for o in listing.images)
    # file:// URLs and plain paths name the same objects
    assert objectstore.list_images(f"file://{tmp_path}/").images == listing.images


def test_local_version_changes_when_file_changes(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"one")
    os.utime(tmp_path / "x.jpg", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    before = objectstore.list_images(str(tmp_path)).images[0]
    assert before.etag == objectstore.list_images(str(tmp_path)).images[0].etag  # stable when unchanged
    os.utime(tmp_path / "x.jpg", ns=(1_700_000_001_000_000_000, 1_700_000_001_000_000_000))
    after = objectstore.list_images(str(tmp_path)).images[0]
    assert before.etag.startswith("mtime-") and after.etag != before.etag


def test_list_memory_fs():
    for name in SOURCE_NAMES:
        objectstore.write_bytes_atomic(f"memory://wildocr-list/{name}", b"x")
    listing = objectstore.list_images("memory://wildocr-list")
    assert [o.uri.rsplit("wildocr-list/", 1)[1] for o in listing.images] == sorted(IMAGE_NAMES)
    assert listing.skipped == 2
    assert objectstore.read_bytes(listing.images[0].uri) == b"x"


def test_list_s3_gives_etags(s3_bucket):
    fs = s3_bucket.fs
    for name in SOURCE_NAMES:
        fs.pipe_file(f"{s3_bucket.name}/in/{name}", name.encode())
    listing = objectstore.list_images(s3_bucket.url("in/"), s3_bucket.storage_options)
    assert [o.uri for o in listing.images] == [s3_bucket.url(f"in/{n}") for n in sorted(IMAGE_NAMES)]
    assert listing.skipped == 2
    for obj in listing.images:
        name = obj.uri.split("/in/", 1)[1]
        assert (
            obj.etag == hashlib.md5(name.encode()).hexdigest()
        )  # S3's ETag of a single PUT, quotes stripped
        assert obj.size == len(name)


def test_missing_prefix_is_an_error_and_an_empty_folder_an_empty_listing(tmp_path, s3_bucket):
    with pytest.raises(FileNotFoundError):
        objectstore.list_images(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        objectstore.list_images(s3_bucket.url("nothing/here/"), s3_bucket.storage_options)
    assert objectstore.list_images(str(tmp_path)).images == []
    s3_bucket.fs.pipe_file(f"{s3_bucket.name}/empty/", b"")  # a folder marker
    assert objectstore.list_images(s3_bucket.url("empty/"), s3_bucket.storage_options).images == []


# Atomic writes ----------------------------------------------------------------------------------------


def test_local_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    url = str(tmp_path / "t" / "part-00000.parquet")
    (tmp_path / "t").mkdir()
    stale = tmp_path / "t" / ".part-00000.parquet.deadbeef.tmp"  # left by a writer killed mid-write
    stale.write_bytes(b"half")
    assert objectstore.write_bytes_atomic(url, b"old") == f"file://{url}"
    objectstore.write_bytes_atomic(url, b"new")
    assert (tmp_path / "t" / "part-00000.parquet").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path / "t")) == ["part-00000.parquet"]


def test_local_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "part-00001.parquet"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(objectstore.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        objectstore.write_bytes_atomic(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["part-00001.parquet"]


def test_s3_write_is_one_put(s3_bucket):
    data = os.urandom(3 * 2**20)
    url = s3_bucket.url("out/x.parquet")
    assert objectstore.write_bytes_atomic(url, data, s3_bucket.storage_options) == url
    info = s3_bucket.fs.info(url, refresh=True)
    # A multipart upload's ETag is "<md5 of md5s>-<parts>"; a single PUT's is the md5 of the bytes.
    assert info["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert objectstore.read_bytes(url, s3_bucket.storage_options) == data


# Paths ------------------------------------------------------------------------------------------------


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


def test_run_key_is_path_safe_and_distinct():
    a = shard.run_key("manual__2026-11-24T00:00:00+00:00")
    b = shard.run_key("manual__2026-11-24T00_00_00_00_00")
    assert a != b and "/" not in a and ":" not in a and "+" not in a
    assert shard.staging_root("s3://b/ocr", "2026-11-24", "r/../../x").startswith(
        "s3://b/ocr/_staging/2026-11-24/r_"
    )


# Schemas and Parquet ----------------------------------------------------------------------------------


def _sample_tables(shard_no: int = 0) -> tuple[pa.Table, pa.Table]:
    from wildocr.engine.types import Word

    now = dt.datetime(2026, 11, 24, 12, 30, 1, 123456, tzinfo=dt.UTC)
    word = Word(
        text="Cafe",
        confidence=0.97,
        det_score=0.88,
        line_id=0,
        poly=((10.0, 20.0), (60.0, 20.0), (60.0, 40.0), (10.0, 40.0)),
        bbox=(10.0, 20.0, 60.0, 40.0),
    )
    images = tables.to_table(
        tables.IMAGES,
        [
            tables.image_row(
                image_uri="s3://b/a.jpg",
                etag="e1",
                size=10,
                run_id="r",
                shard=shard_no,
                processed_at=now,
                model_info=MODELS,
                width=100,
                height=50,
                n_words=1,
            ),
            tables.image_row(
                image_uri="s3://b/b.jpg",
                etag="e2",
                size=3,
                run_id="r",
                shard=shard_no,
                processed_at=now,
                model_info=MODELS,
                error="not an image (unrecognised format)",
            ),
        ],
    )
    words = tables.to_table(tables.WORDS, tables.word_rows("s3://b/a.jpg", [word], shard_no))
    return images, words


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
        shard.write_outputs(root, day, shard_no, images, words, n_shards=2)
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


def test_rerun_with_fewer_shards_removes_stale_parts(tmp_path):
    root = str(tmp_path / "ocr")
    for shard_no in range(3):
        shard.write_outputs(root, "2026-11-24", shard_no, *_sample_tables(shard_no), n_shards=3)
    shard.write_outputs(root, "2026-11-24", 0, *_sample_tables(0), n_shards=1)
    for table in tables.TABLES:
        assert os.listdir(tmp_path / "ocr" / table / "dt=2026-11-24") == ["part-00000.parquet"]


# Manifest ---------------------------------------------------------------------------------------------


def _objects(n: int) -> list[ObjectInfo]:
    return [ObjectInfo(uri=f"s3://b/img_{i:03d}.jpg", size=i, etag=f"e{i}") for i in range(n)]


def test_shard_assignment_is_deterministic():
    objects = _objects(11)
    shuffled = objects[:]
    random.Random(7).shuffle(shuffled)
    a = manifest.assign_shards(objects, 4)
    assert a.equals(manifest.assign_shards(shuffled, 4))
    assert a["shard"].to_pylist() == [0] * 4 + [1] * 4 + [2] * 3
    assert a["image_uri"].to_pylist() == sorted(o.uri for o in objects)
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError):
            manifest.assign_shards(objects, bad)


def test_manifest_roundtrip_and_shards(tmp_path):
    src = tmp_path / "src"
    _fill_local(src)
    url = str(tmp_path / "run" / "manifest.parquet")
    assert shard.build_manifest(str(src), url, shard_size=4) == [0, 1]
    objects, info = manifest.shard_objects(url, 1)
    assert info.n_images == 6 and info.skipped_other == 2 and info.n_shards == 2
    assert [o.uri for o in objects] == sorted(f"file://{src}/{n}" for n in IMAGE_NAMES)[4:]
    with pytest.raises(ValueError):
        manifest.shard_objects(url, 2)
    # a retried shard reads the frozen manifest, not the (changed) prefix
    (src / "zzz_new.jpg").write_bytes(b"new")
    assert manifest.shard_objects(url, 1)[0] == objects


def test_empty_prefix_gives_no_shards(tmp_path):
    url = str(tmp_path / "manifest.parquet")
    (tmp_path / "empty").mkdir()
    assert shard.build_manifest(str(tmp_path / "empty"), url, shard_size=4) == []
    assert manifest.read_manifest(url)[1].n_images == 0


def test_incremental_manifest_skips_ok_rows_of_other_partitions(tmp_path):
    src = tmp_path / "src"
    _fill_local(src)
    listing = objectstore.list_images(str(src)).images
    root = str(tmp_path / "ocr")
    now = tables.utc_now()
    rows = [
        tables.image_row(
            image_uri=listing[0].uri,
            etag=listing[0].etag,
            size=1,
            run_id="r",
            shard=0,
            processed_at=now,
            model_info=MODELS,
        ),
        tables.image_row(
            image_uri=listing[1].uri,
            etag="an-older-version",
            size=1,
            run_id="r",
            shard=0,
            processed_at=now,
            model_info=MODELS,
        ),
        tables.image_row(
            image_uri=listing[2].uri,
            etag=listing[2].etag,
            size=1,
            run_id="r",
            shard=0,
            processed_at=now,
            model_info=MODELS,
            error="truncated",
        ),
    ]
    words = tables.to_table(tables.WORDS, [])
    shard.write_outputs(root, "2026-11-23", 0, tables.to_table(tables.IMAGES, rows), words, n_shards=1)
    url = str(tmp_path / "m.parquet")

    shard.build_manifest(str(src), url, shard_size=10, skip_done_root=root, dt="2026-11-24")
    table, info = manifest.read_manifest(url)
    assert info.skipped_done == 1  # only the ok row with the same ETag
    assert listing[0].uri not in table["image_uri"].to_pylist() and table.num_rows == 5

    # rewriting the partition that holds the ok row: its files get replaced, so nothing may be skipped
    shard.build_manifest(str(src), url, shard_size=10, skip_done_root=root, dt="2026-11-23")
    assert manifest.read_manifest(url)[1].skipped_done == 0
    with pytest.raises(ValueError, match="dt"):
        shard.build_manifest(str(src), url, shard_size=10, skip_done_root=root)


# Streaming --------------------------------------------------------------------------------------------


def test_prefetch_keeps_order_and_bound():
    lock = threading.Lock()
    started = 0
    consumed = 0
    peak = 0

    def work(i: int) -> int:
        nonlocal started, peak
        with lock:
            started += 1
            peak = max(peak, started - consumed)
        return i * i

    out = []
    for value in loader.prefetched(range(50), work, prefetch=3):
        with lock:
            consumed += 1
        out.append(value)
    assert out == [i * i for i in range(50)]
    assert peak <= 3 + 1  # at most `prefetch` ahead of the item being handed out


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
