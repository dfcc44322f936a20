"""`wildocr run` (`wildocr/cli/tables.py`) on generated photos with EXIF: metadata columns, hashes and
duplicates, scripts, content-incremental runs, old partitions beside new ones, staged = fused."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.helpers import HOSTILE, connect, photo_bytes, raw_exif
from wildocr.cli import main
from wildocr.engine import exif as exif_mod
from wildocr.engine.scripts import script_of
from wildocr.samples import PhotoExif, generate
from wildocr.storage import tables

UTC = dt.UTC


def run(prefix: Path, root: Path, day: str, *extra: str) -> None:
    """`wildocr run` on a folder, shards of 3, with the real models."""
    argv = ["run", str(prefix), "--output", str(root), "--dt", day, "--shard-size", "3", "--device", "cpu"]
    assert main([*argv, "--run-id", f"test-{day}", *extra]) == 0


def images_rows(root: Path, day: str) -> dict[str, dict]:
    table = pq.read_table(root / "images" / f"dt={day}")
    return {Path(r["image_uri"]).name: r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def day_one(tmp_path_factory):
    """Day 1: EXIF photos (Latin), Greek signs, a broken-EXIF photo and a re-upload in a later shard."""
    base = tmp_path_factory.mktemp("meta")
    src = base / "day1"
    src.mkdir()
    truth = {f"a_{line['image']}": line for line in generate(str(base / "gen"), count=5, seed=31, exif=True)}
    for name in truth:
        shutil.copy(base / "gen" / name[2:], src / name)
    greek = generate(str(base / "greek"), count=2, seed=32, script="Greek")
    for line in greek:
        shutil.copy(base / "greek" / line["image"], src / f"g_{line['image']}")
    sample = np.asarray(Image.open(base / "gen" / "sample_0000.jpg").convert("RGB"))
    hostile = raw_exif(*HOSTILE["wrong-types"][:3])
    buf = io.BytesIO()
    Image.fromarray(sample).save(buf, "JPEG", quality=90, exif=hostile)
    (src / "b_broken_exif.jpg").write_bytes(buf.getvalue())
    shutil.copy(src / "a_sample_0001.jpg", src / "z_reupload.jpg")  # last shard; original in shard 0
    root = base / "ocr"
    run(src, root, "2026-11-24")
    return base, src, root, truth, greek


def test_exif_columns_come_out_right(day_one):
    _, _, root, truth, _ = day_one
    rows = images_rows(root, "2026-11-24")
    checked = 0
    for name, line in truth.items():
        row = rows[name]
        assert row["status"] == "ok"
        want = dict(line["exif"]) or dict.fromkeys(exif_mod.PhotoMetadata.__slots__[:-1])
        want.pop("warnings", None)
        if want.get("taken_at"):
            want["taken_at"] = dt.datetime.fromisoformat(want["taken_at"])
        for key, value in want.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, abs=1e-6), (name, key)
            else:
                assert row[key] == value, (name, key)
        if line["exif"].get("orientation") in (6, 8):  # stored sideways, read upright
            stored = Image.open(day_one[1] / name)
            assert (row["width"], row["height"]) == (stored.height, stored.width)
        assert row["metadata_warnings"] is None
        checked += bool(line["exif"])
    assert checked >= 3
    assert {rows[n]["camera_make"] for n in truth} == {"Canon", "Apple", None}  # PNG and #3: no EXIF
    assert any(rows[n]["gps_latitude"] is not None for n in truth)
    assert {rows[n]["taken_at_is_local"] for n in truth} >= {True, False}


def test_broken_exif_photo_is_read_with_null_metadata(day_one):
    _, _, root, _, _ = day_one
    row = images_rows(root, "2026-11-24")["b_broken_exif.jpg"]
    assert row["status"] == "ok" and row["error"] is None and row["n_words"] > 0
    assert row["camera_make"] is None and row["camera_model"] is None and row["taken_at"] is None
    assert row["orientation"] is None and "not text" in row["metadata_warnings"]


def test_sha256_and_duplicates_across_shards(day_one):
    import hashlib

    _, src, root, _, _ = day_one
    rows = images_rows(root, "2026-11-24")
    for name, row in rows.items():
        assert row["sha256"] == hashlib.sha256((src / name).read_bytes()).hexdigest()
    assert rows["z_reupload.jpg"]["shard"] != rows["a_sample_0001.jpg"]["shard"]
    assert rows["z_reupload.jpg"]["duplicate_of"] == rows["a_sample_0001.jpg"]["image_uri"]
    assert [n for n, r in rows.items() if r["duplicate_of"]] == ["z_reupload.jpg"]
    assert rows["z_reupload.jpg"]["n_words"] == rows["a_sample_0001.jpg"]["n_words"]  # still read


_LOOKALIKE = str.maketrans("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX")


def fold(text: str) -> str:
    return text.upper().translate(_LOOKALIKE)


def test_greek_signs_get_the_greek_script(day_one):
    """Real models on generated Greek signs: words read with Greek letters are classified Greek."""
    _, _, root, _, greek = day_one
    words = pq.read_table(root / "words" / "dt=2026-11-24").to_pylist()
    mine = [w for w in words if Path(w["image_uri"]).name.startswith("g_")]
    latin = [w for w in words if Path(w["image_uri"]).name.startswith("a_")]
    assert all(w["script"] == script_of(w["text"]) for w in words)
    greek_words = [w for w in mine if w["script"] == "Greek"]
    truth = {t for line in greek for t in (w["text"] for w in line["words"])}
    assert len(greek_words) >= 5, [w["text"] for w in mine]
    # some read as drawn, up to the Latin look-alikes the recogniser puts into capital Greek
    assert any(fold(w["text"]) in {fold(t) for t in truth} for w in greek_words)
    assert {w["script"] for w in latin} <= {"Latin", "Common", "Mixed"}
    assert sum(w["script"] == "Latin" for w in latin) > len(latin) / 2
    assert any(w["script"] == "Common" for w in words)  # prices, times


def test_content_incremental_run_skips_bytes_read_on_an_earlier_date(day_one):
    base, src, root, _, _ = day_one
    day2 = base / "day2"
    day2.mkdir()
    shutil.copy(src / "a_sample_0000.jpg", day2 / "again.jpg")
    shutil.copy(src / "a_sample_0000.jpg", day2 / "again_too.jpg")
    shutil.copy(src / "g_sample_0000.jpg", day2 / "greek.jpg")
    (day2 / "new.jpg").write_bytes(photo_bytes(PhotoExif(make="Nikon"), "JPEG", (320, 200))[0])
    run(day2, root, "2026-11-25", "--skip-seen-content")
    rows = images_rows(root, "2026-11-25")
    first = images_rows(root, "2026-11-24")
    for name, original in (("again.jpg", "a_sample_0000.jpg"), ("again_too.jpg", "a_sample_0000.jpg")):
        assert rows[name]["status"] == "skipped" and rows[name]["n_words"] == 0
        assert rows[name]["duplicate_of"] == first[original]["image_uri"]
        assert rows[name]["sha256"] == first[original]["sha256"]
    assert rows["greek.jpg"]["status"] == "skipped"
    assert rows["new.jpg"]["status"] == "ok" and rows["new.jpg"]["camera_make"] == "Nikon"
    words = pq.read_table(root / "words" / "dt=2026-11-25")
    assert set(words["image_uri"].to_pylist()) <= {rows["new.jpg"]["image_uri"]}

    # Without the option the same bytes are read again, and the same-day copy is marked.
    run(day2, root, "2026-11-25")
    rows = images_rows(root, "2026-11-25")
    assert rows["again.jpg"]["status"] == "ok" and rows["again.jpg"]["n_words"] > 0
    assert rows["again.jpg"]["duplicate_of"] is None
    assert rows["again_too.jpg"]["duplicate_of"] == rows["again.jpg"]["image_uri"]


def test_old_partitions_read_with_new_ones_in_duckdb(day_one, tmp_path):
    """Schema evolution: a partition written with the version-1 schema beside version-2 ones."""
    _, _, root, _, _ = day_one
    lake = tmp_path / "lake"
    shutil.copytree(root, lake, ignore=shutil.ignore_patterns("_staging"))
    old_words = [f.name for f in tables.WORDS][:-2]  # no script, no page
    for table, columns in (("images", [f.name for f in tables.IMAGES][:19]), ("words", old_words)):
        for part in sorted((lake / table / "dt=2026-11-24").glob("*.parquet")):
            old = pq.read_table(part).select(columns)
            old = old.replace_schema_metadata({"wildocr.table": table, "wildocr.schema_version": "1"})
            target = lake / table / "dt=2026-11-20" / part.name
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(old, target)
    assert "sha256" not in pq.read_schema(lake / "images" / "dt=2026-11-20" / "part-00000.parquet").names
    con = duckdb.connect()
    con.execute(f"SET VARIABLE wildocr_root = '{lake}'")
    con.execute((Path(__file__).parents[2] / "include" / "sql" / "duckdb_views.sql").read_text())
    per_day = con.sql(
        "SELECT dt::VARCHAR, count(*), count(sha256), count(camera_make) FROM images GROUP BY dt ORDER BY dt"
    ).fetchall()
    assert [r[0] for r in per_day] == ["2026-11-20", "2026-11-24", "2026-11-25"]
    old_day, new_day = per_day[0], per_day[1]
    assert old_day[1] == new_day[1] and old_day[2] == 0 and old_day[3] == 0
    assert new_day[2] == new_day[1] and new_day[3] > 0
    scripts = con.sql(
        "SELECT dt::VARCHAR, count(*), count(script) FROM words GROUP BY dt ORDER BY dt"
    ).fetchall()
    assert scripts[0][2] == 0 and scripts[0][1] == scripts[1][1] == scripts[1][2] > 0
    # without union_by_name DuckDB takes the first file's columns: the reason the views set it
    plain = con.sql(
        f"SELECT * FROM read_parquet('{lake}/images/*/*.parquet', hive_partitioning = true) LIMIT 0"
    ).columns
    assert "sha256" not in plain


def test_staged_path_gives_the_fused_rows_for_metadata_and_skips(day_one, tmp_path, ocr_engine):
    """The Airflow task chain (detect -> crop -> recognize -> publish) writes the same new columns as the
    fused path, on a content-incremental manifest with a skipped copy and a turned photo with GPS."""
    from wildocr.pipeline import fused, run, staged
    from wildocr.storage import manifest

    _, src, root, _, _ = day_one
    day = "2026-11-26"
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(src / "a_sample_0001.jpg", photos / "copy.jpg")
    shutil.copy(src / "a_sample_0000.jpg", photos / "new.jpg")
    turned = PhotoExif(taken_at=dt.datetime(2026, 11, 26, 8, 0), gps=(-22.95, -43.21, 10.0), orientation=6)
    (photos / "turned.jpg").write_bytes(photo_bytes(turned, "JPEG", (320, 200))[0])
    # new.jpg must not be skipped: make its bytes differ from the day-1 copy, pixels and EXIF unchanged
    (photos / "new.jpg").write_bytes((photos / "new.jpg").read_bytes() + b"\0")
    manifest_url = str(tmp_path / "manifest.parquet")
    assert run.build_manifest(str(photos), manifest_url, shard_size=10, dt=day, skip_seen_root=str(root)) == [
        0
    ]
    assert manifest.read_manifest(manifest_url)[1].seen_url.endswith("manifest.seen.parquet")
    engine = ocr_engine
    fused_root, staged_root = str(tmp_path / "fused"), str(tmp_path / "staged")
    fused.process_shard(manifest_url, 0, output_root=fused_root, dt=day, run_id="r", engine=engine)
    staging = run.staging_root(staged_root, day, "r")
    staged.detect_shard(manifest_url, 0, staging_root=staging, engine=engine)
    staged.crop_shard(manifest_url, 0, staging_root=staging, engine=engine)
    staged.recognize_shard(manifest_url, 0, staging_root=staging, engine=engine)
    staged.publish_shard(
        manifest_url, 0, staging_root=staging, output_root=staged_root, dt=day, run_id="r", engine=engine
    )
    run.remove_staging(staging)

    def stable(out: str, table: str) -> list[dict]:
        rows = pq.read_table(Path(out) / table / f"dt={day}").to_pylist()
        for row in rows:
            for key in ("processed_at", "det_seconds", "rec_seconds", "run_id"):
                row.pop(key, None)
        return sorted(rows, key=lambda r: (r["image_uri"], r.get("word_index", 0)))

    for table in ("images", "words"):
        assert stable(staged_root, table) == stable(fused_root, table), table
    rows = {Path(r["image_uri"]).name: r for r in stable(staged_root, "images")}
    assert rows["copy.jpg"]["status"] == "skipped" and rows["copy.jpg"]["duplicate_of"].endswith(
        "a_sample_0001.jpg"
    )
    assert rows["new.jpg"]["status"] == "ok" and rows["new.jpg"]["n_words"] > 0
    assert rows["new.jpg"]["camera_make"] == "Canon"
    assert rows["turned.jpg"]["orientation"] == 6 and (
        rows["turned.jpg"]["width"],
        rows["turned.jpg"]["height"],
    ) == (
        320,
        200,
    )
    assert rows["turned.jpg"]["gps_latitude"] == pytest.approx(-22.95, abs=1e-6)
    assert rows["turned.jpg"]["taken_at"] == dt.datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_run_and_shard_process_write_the_model_folder_into_every_row(tmp_path):
    """`--model-dir`: the tables name the folder's detector and its hash (fp32 here, so no int8 build);
    the recognizer the folder leaves out stays stock. The same for one shard processed by hand."""
    import hashlib

    from tests.helpers import model_folder

    photos = tmp_path / "photos"
    generate(str(photos), count=2, seed=3)
    folder = model_folder(tmp_path / "ic15-ft", det_bias_shift=-2.0)
    tuned = ["--model-dir", str(folder), "--option", "det_precision=fp32"]
    run(photos, tmp_path / "run", "2026-03-01", *tuned)
    manifest = str(tmp_path / "manifest.parquet")
    assert main(["shard", "plan", str(photos), "--manifest", manifest, "--shard-size", "5"]) == 0
    shard = ["shard", "process", manifest, "--shard", "0", "--output", str(tmp_path / "shard")]
    assert main([*shard, "--dt", "2026-03-01", "--device", "cpu", *tuned]) == 0
    det_sha256 = hashlib.sha256((folder / "det.onnx").read_bytes()).hexdigest()
    for root in ("run", "shard"):
        rows = images_rows(tmp_path / root, "2026-03-01").values()
        assert len(rows) == 2 and all(r["status"] == "ok" and r["n_words"] > 0 for r in rows)
        assert {(r["det_model"], r["det_sha256"]) for r in rows} == {("ic15-ft/det.onnx", det_sha256)}
        assert {r["rec_model"] for r in rows} == {"PP-OCRv6_rec_small.onnx"}


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """`wildocr run` (shards of 3) on a photo, a 3-page PDF, a 2-page TIFF, a truncated PDF and a copy of
    the PDF in a later shard."""
    from tests.helpers import pdf_bytes, sample_pages, tiff_bytes

    base = tmp_path_factory.mktemp("documents")
    src = base / "src"
    src.mkdir()
    pages, truth = sample_pages(3)
    letter = pdf_bytes(pages)
    (src / "letter.pdf").write_bytes(letter)
    (src / "cut.pdf").write_bytes(letter[: len(letter) // 3])
    pages[2].save(src / "photo.jpg", quality=95)
    (src / "scan.tif").write_bytes(tiff_bytes(pages[:2]))
    (src / "z_copy.pdf").write_bytes(letter)  # shard 1; its first copy (letter.pdf) is in shard 0
    root = base / "ocr"
    run(src, root, "2026-11-27")
    return src, root, truth


def _page_rows(root: Path, table: str, day: str) -> list[dict]:
    rows = pq.read_table(root / table / f"dt={day}").to_pylist()
    return sorted(rows, key=lambda r: (r["image_uri"], r["page"], r.get("word_index", 0)))


def test_documents_give_one_images_row_per_page_and_words_carry_the_page(documents):
    _, root, truth = documents
    images = _page_rows(root, "images", "2026-11-27")
    got = [(Path(r["image_uri"]).name, r["page"], r["status"]) for r in images]
    assert got == [
        ("cut.pdf", 1, "error"),
        ("letter.pdf", 1, "ok"),
        ("letter.pdf", 2, "ok"),
        ("letter.pdf", 3, "ok"),
        ("photo.jpg", 1, "ok"),
        ("scan.tif", 1, "ok"),
        ("scan.tif", 2, "ok"),
        ("z_copy.pdf", 1, "ok"),
        ("z_copy.pdf", 2, "ok"),
        ("z_copy.pdf", 3, "ok"),
    ]
    assert images[0]["error"].startswith("PDF is damaged: ")
    assert (
        pq.read_schema(root / "images" / "dt=2026-11-27" / "part-00000.parquet").metadata[
            b"wildocr.schema_version"
        ]
        == tables.SCHEMA_VERSION.encode()  # 3 added `page`; the writer stamps the current version
    )
    words = _page_rows(root, "words", "2026-11-27")
    for row in images[1:]:
        mine = {w["text"] for w in words if (w["image_uri"], w["page"]) == (row["image_uri"], row["page"])}
        assert (
            len([w for w in words if (w["image_uri"], w["page"]) == (row["image_uri"], row["page"])])
            == row["n_words"]
        )
        expected = truth[2] if row["image_uri"].endswith("photo.jpg") else truth[row["page"] - 1]
        assert len(mine & expected) >= 0.8 * len(expected), (row["image_uri"], row["page"])
    # duplicates per object: every page of the copy points at the first copy, its pages at nothing
    letter_uri = images[1]["image_uri"]
    assert [r["duplicate_of"] for r in images[1:4]] == [None] * 3
    assert [r["duplicate_of"] for r in images[7:]] == [letter_uri] * 3
    assert len({r["sha256"] for r in images[1:4] + images[7:]}) == 1


def test_a_rerun_of_documents_never_duplicates_a_page(documents):
    src, root, _ = documents
    before = _page_rows(root, "images", "2026-11-27")
    run(src, root, "2026-11-27")
    after = _page_rows(root, "images", "2026-11-27")
    keys = [(r["image_uri"], r["page"]) for r in after]
    assert len(keys) == len(set(keys)) == len(before)
    n_words = pq.read_table(root / "words" / "dt=2026-11-27").num_rows
    assert n_words == sum(r["n_words"] for r in after)


def test_version_2_partitions_read_as_page_1_beside_version_3_and_alone(documents, tmp_path):
    """Files written before `page` (schema version 2) read beside version 3 by column name: page is null
    in the files, 1 through the DuckDB views and the browser's reader (`coalesce(page, 1)`); and so does
    a lake that holds version-2 files only, where no file has a `page` column for the views to replace."""
    from wildocr.storage.query import TableReader

    _, root, _ = documents
    lake = tmp_path / "lake"
    shutil.copytree(root, lake, ignore=shutil.ignore_patterns("_staging"))
    old = lake / "images" / "dt=2026-11-20"
    old.mkdir()
    old_words = lake / "words" / "dt=2026-11-20"
    old_words.mkdir()
    for table, folder in (("images", old), ("words", old_words)):
        part = pq.read_table(lake / table / "dt=2026-11-27" / "part-00001.parquet")
        v2 = part.drop_columns(["page"]).replace_schema_metadata(
            {"wildocr.table": table, "wildocr.schema_version": "2"}
        )
        pq.write_table(v2, folder / "part-00000.parquet")
    con = duckdb.connect()
    con.execute(f"SET VARIABLE wildocr_root = '{lake}'")
    con.execute((Path(__file__).parents[2] / "include" / "sql" / "duckdb_views.sql").read_text())
    raw = con.sql(
        f"SELECT count(*) FROM read_parquet('{lake}/images/*/*.parquet', hive_partitioning = true, "
        "union_by_name = true) WHERE page IS NULL"
    ).fetchall()[0][0]
    assert raw == 5  # shard 1 (scan.tif's 2 pages, z_copy.pdf's 3) as version 2 wrote it: no page at all
    per_day = con.sql(
        "SELECT dt::VARCHAR, count(*), count(*) FILTER (page = 1), max(page) FROM images "
        "GROUP BY dt ORDER BY dt"
    ).fetchall()
    assert per_day == [("2026-11-20", 5, 5, 1), ("2026-11-27", 10, 5, 3)]
    assert con.sql("SELECT count(*) FROM words WHERE page IS NULL").fetchall()[0][0] == 0
    reader = TableReader(str(lake))
    entries, total = reader.images("2026-11-20")
    assert total == 5 and {e.page for e in entries} == {1}
    entries, _ = reader.images("2026-11-27")
    letter = [e for e in entries if e.image_uri.endswith("letter.pdf")]
    assert [e.page for e in letter] == [1, 2, 3]
    third = reader.image("2026-11-27", letter[0].key, page=3)
    assert third is not None and third.page == 3 and third.n_words > 0
    assert len(reader.words("2026-11-27", third.image_uri, page=3)) == third.n_words
    hits = reader.search(reader.words("2026-11-27", third.image_uri, page=3)[0].text, dt="2026-11-27")
    assert any(h.image_uri == third.image_uri and h.page == 3 for h in hits)
    assert int(tables.SCHEMA_VERSION) >= 3  # the version that added `page`, or a later one

    # A lake of version-2 files only (no file has `page` at all) reads the same way.
    only_old = tmp_path / "old-lake"
    for table in ("images", "words"):
        shutil.copytree(lake / table / "dt=2026-11-20", only_old / table / "dt=2026-11-20")
    con = connect(str(only_old))
    assert con.sql("SELECT count(*), count(*) FILTER (page = 1) FROM images").fetchall() == [(5, 5)]
    n_words = con.sql("SELECT count(*) FROM words").fetchall()[0][0]
    assert n_words > 0
    assert con.sql("SELECT count(*) FROM words WHERE page = 1").fetchall()[0][0] == n_words
    assert con.sql("SELECT typeof(page) FROM images LIMIT 1").fetchall() == [("INTEGER",)]
    entries, total = TableReader(str(only_old)).images("2026-11-20")
    assert total == 5 and {e.page for e in entries} == {1}
