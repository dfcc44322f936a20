"""Photos as data: EXIF metadata, content hashes and duplicates, the script of each word.

EXIF is written by Pillow (wildocr.samples.PhotoExif) for believable photos, and byte by byte (a tiny TIFF
writer below) for hostile ones, since Pillow's writer refuses most of what an attacker would write. The
end-to-end tests run the real models through `wildocr run` and read the tables back with DuckDB.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import struct
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from wildocr.engine import exif as exif_mod
from wildocr.engine.imageio import decode_image, decode_photo
from wildocr.engine.scripts import script_of
from wildocr.pipeline import cli as pipeline_cli
from wildocr.pipeline import duplicates
from wildocr.samples import PhotoExif, generate, stored_for_orientation

UTC = dt.UTC

# ---------------------------------------------------------------- helpers


def photo_bytes(exif: PhotoExif | bytes | None, fmt: str = "PNG", size=(64, 40)) -> tuple[bytes, np.ndarray]:
    """A small photo with a gradient (so turns are visible) and its upright RGB pixels."""
    w, h = size
    upright = np.zeros((h, w, 3), np.uint8)
    upright[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 3
    upright[..., 1] = np.arange(h, dtype=np.uint8)[:, None] * 5
    upright[:5, :5, 2] = 255
    image = Image.fromarray(upright, "RGB")
    extra = {}
    if isinstance(exif, PhotoExif):
        image = stored_for_orientation(image, exif.orientation)
        extra["exif"] = exif.to_exif()
    elif exif is not None:
        extra["exif"] = exif
    buf = io.BytesIO()
    image.save(buf, fmt, **extra)
    return buf.getvalue(), upright


ASCII, SHORT, LONG, RATIONAL, BYTE = 2, 3, 4, 5, 1


def ascii_(text: str | bytes) -> tuple[int, int, bytes]:
    raw = (text.encode("latin-1") if isinstance(text, str) else text) + b"\0"
    return ASCII, len(raw), raw


def short(*values: int) -> tuple[int, int, bytes]:
    return SHORT, len(values), struct.pack(f"<{len(values)}H", *values)


def long_(*values: int) -> tuple[int, int, bytes]:
    return LONG, len(values), struct.pack(f"<{len(values)}I", *values)


def rational(*pairs: tuple[int, int]) -> tuple[int, int, bytes]:
    return RATIONAL, len(pairs), b"".join(struct.pack("<II", n, d) for n, d in pairs)


def _ifd(entries: dict[int, tuple[int, int, bytes]], start: int) -> bytes:
    data_at = start + 2 + 12 * len(entries) + 4
    head, data = struct.pack("<H", len(entries)), b""
    for tag in sorted(entries):
        typ, count, payload = entries[tag]
        if len(payload) <= 4:
            head += struct.pack("<HHI", tag, typ, count)[:8] + payload.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, typ, count, data_at + len(data))
            data += payload + b"\0" * (len(payload) % 2)
    return head + struct.pack("<I", 0) + data


def raw_exif(ifd0: dict, exif_ifd: dict | None = None, gps: dict | None = None) -> bytes:
    """APP1 payload (b"Exif\\0\\0" + little-endian TIFF) with any tag types and values, valid or not."""
    ifd0 = dict(ifd0)
    subs = [(0x8769, exif_ifd), (0x8825, gps)]
    for tag, sub in subs:
        if sub is not None:
            ifd0[tag] = long_(0)
    first = _ifd(ifd0, 8)
    at, blobs = 8 + len(first), []
    for tag, sub in subs:
        if sub is not None:
            ifd0[tag] = long_(at)
            blob = _ifd(sub, at)
            blobs.append(blob)
            at += len(blob)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + _ifd(ifd0, 8) + b"".join(blobs)


# ---------------------------------------------------------------- EXIF: believable photos


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize(
    "meta",
    [
        PhotoExif(
            taken_at=dt.datetime(2026, 11, 24, 14, 3, 5),
            utc_offset="+01:00",
            subsec="25",
            gps=(48.858222, 2.2945, 35.2),
            make="Canon",
            model="Canon EOS R5",
            orientation=1,
        ),
        PhotoExif(taken_at=dt.datetime(2026, 1, 1, 0, 30, 0), utc_offset="-05:30", orientation=6),
        PhotoExif(
            taken_at=dt.datetime(2025, 12, 31, 23, 59, 59), gps=(-33.8568, -151.2153, -2.5), orientation=8
        ),
        PhotoExif(make="  GoPro\0", model="HERO12", orientation=3),
        PhotoExif(gps=(40.6892, -74.0445, None), orientation=5),
        PhotoExif(make="X", gps=(-22.95, -43.21, 10.0)),  # 22°56'60": minutes must not round up to 60
    ],
    ids=[
        "offset-gps-camera",
        "negative-offset-turned",
        "local-time-south-west",
        "camera-only",
        "gps-no-alt",
        "gps-near-whole-minutes",
    ],
)
def test_metadata_of_generated_photos(meta, fmt):
    data, upright = photo_bytes(meta, fmt)
    photo = decode_photo(data)
    got = {name: getattr(photo.metadata, name) for name in meta.expected()}
    want = meta.expected()
    if want["taken_at"] is not None:
        want["taken_at"] = dt.datetime.fromisoformat(want["taken_at"])
    if want["camera_make"]:
        want["camera_make"] = want["camera_make"].strip(" \0")
    for key in ("gps_latitude", "gps_longitude", "gps_altitude"):
        if want[key] is not None:
            assert got.pop(key) == pytest.approx(want.pop(key), abs=1e-6)
    assert got == want
    assert photo.metadata.warnings == []
    assert photo.pixels.shape[:2] == upright.shape[:2]  # the orientation was applied
    if fmt == "PNG":  # lossless: exactly the upright pixels
        assert np.array_equal(photo.pixels[..., ::-1], upright)


def test_local_time_is_flagged_and_utc_time_is_shifted():
    # JPEG: Pillow's PNG writer drops an EXIF block whose IFD0 holds nothing but the Exif IFD pointer
    local = decode_photo(photo_bytes(PhotoExif(taken_at=dt.datetime(2026, 3, 1, 9, 0)), "JPEG")[0]).metadata
    assert local.taken_at == dt.datetime(2026, 3, 1, 9, 0, tzinfo=UTC) and local.taken_at_is_local is True
    assert local.taken_at_offset_minutes is None
    tokyo = PhotoExif(taken_at=dt.datetime(2026, 3, 1, 9, 0), utc_offset="+09:00")
    meta = decode_photo(photo_bytes(tokyo, "JPEG")[0]).metadata
    assert meta.taken_at == dt.datetime(2026, 3, 1, 0, 0, tzinfo=UTC) and meta.taken_at_is_local is False
    assert meta.taken_at_offset_minutes == 540


def test_photo_without_exif_has_no_metadata_and_no_warning():
    meta = decode_photo(photo_bytes(None)[0]).metadata
    assert meta == exif_mod.PhotoMetadata()


def test_recorded_orientation_is_the_one_applied():
    """Every orientation: the pixels come out upright and the metadata names the turn that did it."""
    for orientation in range(1, 9):
        data, upright = photo_bytes(PhotoExif(orientation=orientation))
        photo = decode_photo(data)
        assert photo.metadata.orientation == orientation
        assert np.array_equal(photo.pixels[..., ::-1], upright)
        assert np.array_equal(decode_image(data), photo.pixels)


# ---------------------------------------------------------------- EXIF: hostile photos

GOOD_TIME = {0x9003: ascii_("2026:11:24 10:00:00")}
HOSTILE = {
    "zero-denominators": (
        {0x0112: short(1)},
        GOOD_TIME,
        {
            1: ascii_("N"),
            2: rational((48, 0), (0, 0), (5, 0)),
            3: ascii_("E"),
            4: rational((2, 1), (1, 1), (1, 1)),
            5: (BYTE, 1, b"\0"),
            6: rational((35, 0)),
        },
        {"gps_latitude": None, "gps_longitude": None, "gps_altitude": None, "orientation": 1},
    ),
    "wrong-types": (
        {0x010F: short(7), 0x0110: long_(1234), 0x0112: ascii_("6")},
        {0x9003: long_(20261124), 0x9011: short(60)},
        {1: short(78), 2: ascii_("48 51 24"), 3: ascii_("E"), 4: ascii_("2.29")},
        {"camera_make": None, "camera_model": None, "orientation": None, "taken_at": None},
    ),
    "absurd-gps": (
        {0x010F: ascii_("Canon")},
        {0x9003: ascii_("0000:00:00 00:00:00"), 0x9011: ascii_("+25:00")},
        {
            1: ascii_("N"),
            2: rational((95, 1), (0, 1), (0, 1)),
            3: ascii_("Q"),
            4: rational((10, 1), (75, 1), (0, 1)),
            5: (BYTE, 1, b"\x07"),
            6: rational((9_000_000, 1)),
        },
        {"gps_latitude": None, "gps_longitude": None, "gps_altitude": None, "taken_at": None},
    ),
    "huge-strings": (
        {0x010F: ascii_("M" * 60_000), 0x0110: ascii_("bad\x07model"), 0x0112: short(9)},
        {0x9003: ascii_("2026:13:45 99:00:00"), 0x9291: ascii_("x" * 500)},
        None,
        {"camera_make": None, "camera_model": None, "orientation": None, "taken_at": None},
    ),
    "void-fix-and-null-island": (
        {},
        {0x9003: ascii_("2026:11:24 10:00:00"), 0x9011: ascii_("nonsense")},
        {9: ascii_("V"), 1: ascii_("N"), 2: rational((1, 1), (0, 1), (0, 1)), 3: ascii_("E")},
        {
            "gps_latitude": None,
            "taken_at": dt.datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
            "taken_at_is_local": True,
        },
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_hostile_exif_gives_nulls_and_warnings_never_an_error(name, fmt):
    ifd0, exif_ifd, gps, expected = HOSTILE[name]
    data, upright = photo_bytes(raw_exif(ifd0, exif_ifd, gps), fmt)
    photo = decode_photo(data)  # must not raise
    assert photo.pixels.shape[:2] == upright.shape[:2]
    for key, value in expected.items():
        assert getattr(photo.metadata, key) == value, key
    assert photo.metadata.warnings, "a dropped field must say why"
    text = photo.metadata.warning_text
    assert text is not None and len(text) <= exif_mod.MAX_WARNING_CHARS


def test_sixty_seconds_of_arc_are_accepted():
    """Writers that round 59.99995" up write 60": the position is still right."""
    gps = {
        1: ascii_("S"),
        2: rational((22, 1), (56, 1), (60, 1)),
        3: ascii_("W"),
        4: rational((43, 1), (12, 1), (36, 1)),
    }
    meta = decode_photo(photo_bytes(raw_exif({}, None, gps), "JPEG")[0]).metadata
    assert (meta.gps_latitude, meta.gps_longitude) == (pytest.approx(-22.95), pytest.approx(-43.21))
    assert meta.warnings == []


@pytest.mark.parametrize(
    "blob",
    [
        b"Exif\0\0II*\0\xff\xff\xff\x7f",  # IFD0 offset far outside
        b"Exif\0\0MM\0*\0\0\0\x08\xff\xff",  # entry count with no entries
        b"Exif\0\0garbage that is not TIFF at all",
        raw_exif({0x0112: short(6)})[:-6],  # truncated mid-IFD
    ],
    ids=["offset-outside", "count-without-entries", "not-tiff", "truncated"],
)
def test_unreadable_exif_blocks_still_decode(blob):
    data, upright = photo_bytes(blob, "JPEG")
    photo = decode_photo(data)
    assert photo.pixels.shape[:2] == upright.shape[:2]
    assert photo.metadata.taken_at is None and photo.metadata.gps_latitude is None


# ---------------------------------------------------------------- scripts


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("OPEN", "Latin"),
        ("café", "Latin"),
        ("Ｃａｆｅ", "Latin"),
        ("ΚΑΦΕΣ", "Greek"),
        ("αγορα", "Greek"),
        ("ΣTAΣH", "Greek"),  # capital Greek read with Latin look-alikes
        ("ψαpiα", "Greek"),
        ("ХЛЕБ", "Cyrillic"),
        ("AПTEKA", "Cyrillic"),
        ("日本", "Han"),
        ("ひらがな", "Hiragana"),
        ("カタカナ", "Katakana"),
        ("東京タワー", "Japanese"),
        ("漢字かな", "Japanese"),
        ("한국어", "Hangul"),
        ("韓國어", "Korean"),
        ("مرحبا", "Arabic"),
        ("שלום", "Hebrew"),
        ("नमस्ते", "Devanagari"),
        ("สวัสดี", "Thai"),
        ("12:30", "Common"),
        ("$4.99", "Common"),
        ("-", "Common"),
        ("Wi-Fiзона", "Mixed"),
        ("Ωmega", "Mixed"),
        ("TABEPNA", "Latin"),  # look-alikes only: nothing says Greek
        ("\ue000", "Unknown"),
    ],
)
def test_script_of_words(text, script):
    assert script_of(text) == script


def test_every_recogniser_character_has_a_known_script():
    """The recogniser's charset (read from the real model) maps into named scripts, never Unknown."""
    from wildocr.engine import EngineConfig, OCREngine

    charset = OCREngine(EngineConfig(device="cpu")).recognizer.charset
    scripts = {script_of(c) for c in charset[1:] if c.strip()}
    assert "Unknown" not in scripts
    assert {"Latin", "Greek", "Han", "Hiragana", "Katakana", "Common"} <= scripts


# ---------------------------------------------------------------- duplicates (pure rule)


def test_duplicate_rule_first_uri_wins_and_skipped_rows_keep_their_pointer():
    rows = [
        {"image_uri": "s3://b/z.jpg", "sha256": "h1", "status": "ok", "duplicate_of": None},
        {"image_uri": "s3://b/a.jpg", "sha256": "h1", "status": "ok", "duplicate_of": None},
        {"image_uri": "s3://b/m.jpg", "sha256": "h1", "status": "error", "duplicate_of": None},
        {"image_uri": "s3://b/c.jpg", "sha256": "h2", "status": "ok", "duplicate_of": None},
        {"image_uri": "s3://b/d.jpg", "sha256": None, "status": "error", "duplicate_of": None},
        {"image_uri": "s3://b/e.jpg", "sha256": "h3", "status": "skipped", "duplicate_of": "s3://b/old.jpg"},
    ]
    duplicates.mark_rows(rows)
    assert [r["duplicate_of"] for r in rows] == [
        "s3://b/a.jpg",
        None,
        "s3://b/a.jpg",
        None,
        None,
        "s3://b/old.jpg",
    ]


# ---------------------------------------------------------------- end to end: real models, real tables


def run(prefix: Path, root: Path, day: str, *extra: str) -> None:
    """`wildocr run` on a folder, shards of 3, with the real models."""
    argv = ["run", str(prefix), "--output", str(root), "--dt", day, "--shard-size", "3", "--device", "cpu"]
    assert pipeline_cli.main([*argv, "--run-id", f"test-{day}", *extra]) == 0


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
    from wildocr.storage import tables

    _, _, root, _, _ = day_one
    lake = tmp_path / "lake"
    shutil.copytree(root, lake, ignore=shutil.ignore_patterns("_staging"))
    old_words = [f.name for f in tables.WORDS][:-1]
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
    con.execute((Path(__file__).parents[1] / "include" / "sql" / "duckdb_views.sql").read_text())
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


def test_staged_path_gives_the_fused_rows_for_metadata_and_skips(day_one, tmp_path):
    """The Airflow task chain (detect -> crop -> recognize -> publish) writes the same new columns as the
    fused path, on a content-incremental manifest with a skipped copy and a turned photo with GPS."""
    from wildocr.engine import EngineConfig, OCREngine
    from wildocr.pipeline import shard
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
    assert shard.build_manifest(
        str(photos), manifest_url, shard_size=10, dt=day, skip_seen_root=str(root)
    ) == [0]
    assert manifest.read_manifest(manifest_url)[1].seen_url.endswith("manifest.seen.parquet")
    engine = OCREngine(EngineConfig(device="cpu"))
    fused_root, staged_root = str(tmp_path / "fused"), str(tmp_path / "staged")
    shard.process_shard(manifest_url, 0, output_root=fused_root, dt=day, run_id="r", engine=engine)
    staging = shard.staging_root(staged_root, day, "r")
    shard.detect_shard(manifest_url, 0, staging_root=staging, engine=engine)
    shard.crop_shard(manifest_url, 0, staging_root=staging, engine=engine)
    shard.recognize_shard(0, staging_root=staging, engine=engine)
    shard.publish_shard(manifest_url, 0, staging_root=staging, output_root=staged_root, dt=day, run_id="r")
    shard.remove_staging(staging)

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
