"""The new columns through the real DAG (`dag.test()`): duplicates across shards marked by `finalize`,
and the `skip_seen_content` Param skipping OCR of bytes read on an earlier date."""

from __future__ import annotations

import shutil
from pathlib import Path

import pendulum
import pytest

from include.sample_data import generate
from tests.test_airflow_e2e import _con, _dt, _read, _run

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]


def test_nightly_marks_duplicates_across_shards_and_skips_seen_content(tmp_path: Path) -> None:
    root = str(tmp_path / "ocr")
    day1, day2 = tmp_path / "photos" / "2026-03-10", tmp_path / "photos" / "2026-03-11"
    generate(str(day1), count=3, seed=41, exif=True)
    shutil.copy(day1 / "sample_0000.jpg", day1 / "zz_reupload.jpg")  # shard 1; its original is in shard 0
    conf = {"source_prefix": str(tmp_path / "photos" / "{{ ds }}"), "output_root": root, "shard_size": 2}
    _, states = _run("wildocr_nightly", pendulum.datetime(2026, 3, 10, 2, tz="UTC"), conf)
    assert states[("finalize", -1)] == "success" and ("ocr.publish", 1) in states

    con = _con()
    rows = {Path(r["image_uri"]).name: r for r in _read(con, root, "images")}
    original, copy = rows["sample_0000.jpg"], rows["zz_reupload.jpg"]
    assert original["shard"] != copy["shard"] and original["sha256"] == copy["sha256"]
    assert copy["duplicate_of"] == original["image_uri"] and original["duplicate_of"] is None
    assert original["camera_make"] == "Canon" and original["gps_latitude"] is not None

    day2.mkdir(parents=True)
    shutil.copy(day1 / "sample_0001.jpg", day2 / "again.jpg")
    generate(str(tmp_path / "fresh"), count=1, seed=42)
    shutil.copy(tmp_path / "fresh" / "sample_0000.jpg", day2 / "fresh.jpg")
    _run("wildocr_nightly", pendulum.datetime(2026, 3, 11, 2, tz="UTC"), {**conf, "skip_seen_content": True})
    rows2 = {Path(r["image_uri"]).name: r for r in _read(con, root, "images") if _dt(r["dt"]) == "2026-03-11"}
    assert rows2["again.jpg"]["status"] == "skipped" and rows2["again.jpg"]["n_words"] == 0
    assert rows2["again.jpg"]["duplicate_of"] == rows["sample_0001.jpg"]["image_uri"]
    assert rows2["fresh.jpg"]["status"] == "ok" and rows2["fresh.jpg"]["n_words"] > 0
    words2 = [w for w in _read(con, root, "words") if _dt(w["dt"]) == "2026-03-11"]
    assert {Path(w["image_uri"]).name for w in words2} == {"fresh.jpg"}
    assert {w["script"] for w in words2} <= {"Latin", "Common", "Mixed", "Greek"}
