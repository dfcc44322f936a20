"""Shards end to end with the real OCR engine: S3 (moto on loopback) in, Parquet out, DuckDB reads it back.

Sample photos come from include/sample_data.py, whose ground truth says which words are drawn where.
Image counts stay small: CPU OCR takes about a second per photo on a busy machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

import pytest

from include.sample_data import generate
from tests.helpers import _sample_tables, read_rows, stable
from wildocr.pipeline import fused, outputs, run, staged
from wildocr.storage import manifest, objectstore, tables

DT = "2026-11-24"


class SpyEngine:
    """The real engine, recording how many images each chunk sent to detection (the streaming bound)."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.batches: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def map_images(self, fn, items):
        self.batches.append(len(items))
        return self._engine.map_images(fn, items)


@dataclass
class S3Run:
    bucket: str
    storage_options: dict
    source: str
    output: str
    manifest_url: str
    ground_truth: dict[str, list[dict]]
    summaries: list[dict]


@pytest.fixture(scope="module")
def s3_run(s3_server, ocr_engine) -> S3Run:
    """Four generated photos in a bucket, planned into two shards and processed by the fused path."""
    bucket = s3_server.create_bucket()
    options = s3_server.storage_options
    source = f"s3://{bucket}/incoming/{DT}/"
    lines = generate(source, count=4, seed=11, storage_options=options)
    output = f"s3://{bucket}/ocr"
    staging = run.staging_root(output, DT, "scheduled__2026-11-24T02:00:00+00:00")
    manifest_url = run.manifest_url(staging)
    assert run.build_manifest(source, manifest_url, shard_size=2, storage_options=options) == [0, 1]
    summaries = [
        fused.process_shard(
            manifest_url,
            n,
            output_root=output,
            dt=DT,
            run_id="first",
            engine=ocr_engine,
            storage_options=options,
            chunk_size=2,
        )
        for n in (0, 1)
    ]
    ground_truth = {f"{source}{line['image']}": line["words"] for line in lines}
    return S3Run(bucket, options, source, output, manifest_url, ground_truth, summaries)


def test_s3_roundtrip_reads_the_drawn_words(s3_run, tmp_path):
    info = manifest.read_manifest(s3_run.manifest_url, s3_run.storage_options)[1]
    assert (info.n_images, info.n_shards, info.skipped_other) == (4, 2, 1)  # ground_truth.jsonl skipped
    assert [s.ok for s in s3_run.summaries] == [2, 2]
    keys = objectstore.list_files(s3_run.output + "/words", s3_run.storage_options)
    assert keys == [f"{s3_run.output}/words/dt={DT}/part-0000{n}.parquet" for n in (0, 1)]

    images = read_rows(s3_run.output, "images", s3_run.storage_options, tmp_path)
    words = read_rows(s3_run.output, "words", s3_run.storage_options, tmp_path)
    assert sorted(r["image_uri"] for r in images) == sorted(s3_run.ground_truth)
    assert {r["status"] for r in images} == {"ok"}
    assert all(
        str(r["dt"]) == DT
        and r["det_model"]
        and len(r["rec_sha256"]) == len(r["cls_sha256"]) == len(r["verifier_sha256"]) == 64
        and json.loads(r["engine_options"])["det_limit_side"] == 736  # the stock detector's own size
        for r in images
    )
    assert s3_run.summaries[0].models["engine_options"] == images[0]["engine_options"]
    n_words = Counter(r["image_uri"] for r in words)
    assert all(r["n_words"] == n_words[r["image_uri"]] for r in images)

    found = total = 0
    for uri, truth in s3_run.ground_truth.items():
        mine = [w for w in words if w["image_uri"] == uri]
        for gt in truth:
            total += 1
            xs, ys = [p[0] for p in gt["poly"]], [p[1] for p in gt["poly"]]
            hits = [
                w
                for w in mine
                if w["text"] == gt["text"]
                and min(xs) - 8 <= (w["x_min"] + w["x_max"]) / 2 <= max(xs) + 8
                and min(ys) - 8 <= (w["y_min"] + w["y_max"]) / 2 <= max(ys) + 8
            ]
            found += bool(hits)
    assert total >= 10 and found / total >= 0.8, f"{found}/{total} drawn words read at their place"


def test_rerun_of_a_shard_replaces_its_files(s3_run, ocr_engine, tmp_path):
    before_images = read_rows(s3_run.output, "images", s3_run.storage_options, tmp_path)
    before_words = read_rows(s3_run.output, "words", s3_run.storage_options, tmp_path)
    again = fused.process_shard(
        s3_run.manifest_url,
        0,
        output_root=s3_run.output,
        dt=DT,
        run_id="second",
        engine=ocr_engine,
        storage_options=s3_run.storage_options,
    )
    assert again.images == s3_run.summaries[0].images and again.words == s3_run.summaries[0].words
    after_images = read_rows(s3_run.output, "images", s3_run.storage_options, tmp_path)
    after_words = read_rows(s3_run.output, "words", s3_run.storage_options, tmp_path)
    assert len(after_images) == len(before_images) and len(after_words) == len(before_words)
    assert stable(after_images) == stable(before_images)
    assert stable(after_words) == stable(before_words)
    assert Counter(r["run_id"] for r in after_images) == {"first": 2, "second": 2}  # shard 0 really rewritten


def test_staged_path_gives_the_fused_rows(s3_run, ocr_engine, tmp_path):
    options = s3_run.storage_options
    output = f"s3://{s3_run.bucket}/staged-ocr"
    staging = run.staging_root(output, DT, "manual__staged")
    for n in (0, 1):
        staged.detect_shard(
            s3_run.manifest_url, n, staging_root=staging, engine=ocr_engine, storage_options=options
        )
        staged.crop_shard(
            s3_run.manifest_url, n, staging_root=staging, engine=ocr_engine, storage_options=options
        )
        staged.recognize_shard(
            s3_run.manifest_url, n, staging_root=staging, engine=ocr_engine, storage_options=options
        )
        summary = staged.publish_shard(
            s3_run.manifest_url,
            n,
            staging_root=staging,
            output_root=output,
            dt=DT,
            run_id="staged",
            storage_options=options,
            engine=ocr_engine,
        )
        json.dumps(summary.to_xcom())  # goes to XCom
        assert summary.words == s3_run.summaries[n].words
    assert objectstore.list_files(staging, options)  # staged files exist until removed
    run.remove_staging(staging, options)
    assert objectstore.list_files(staging, options) == []
    for table in tables.TABLES:
        fused_rows = read_rows(s3_run.output, table, options, tmp_path)
        staged_rows = read_rows(output, table, options, tmp_path)
        assert stable(staged_rows) == stable(fused_rows), table


def _write_bad_objects(src, options=None) -> None:
    good = sorted(n for n in os.listdir(src) if n.endswith((".jpg", ".png")))
    data = (src / good[0]).read_bytes()
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (src / "truncated.JPG").write_bytes(data[: len(data) // 3])
    (src / "vanishing.png").write_bytes(data)


def test_bad_objects_become_error_rows(tmp_path, ocr_engine):
    src = tmp_path / "src"
    generate(str(src), count=2, seed=3)
    _write_bad_objects(src)
    out = str(tmp_path / "ocr")
    manifest_url = str(tmp_path / "manifest.parquet")
    assert run.build_manifest(str(src), manifest_url, shard_size=10) == [0]
    (src / "vanishing.png").unlink()  # deleted between listing and reading
    spy = SpyEngine(ocr_engine)
    summary = fused.process_shard(
        manifest_url, 0, output_root=out, dt=DT, run_id="r", engine=spy, chunk_size=2, prefetch=1
    )
    assert (summary.images, summary.ok, summary.errors) == (5, 2, 3)
    assert sum(spy.batches) == 2 and max(spy.batches) <= 2  # never more than chunk_size images per call
    rows = {r["image_uri"].rsplit("/", 1)[1]: r for r in read_rows(out, "images")}
    assert rows["corrupt.jpg"]["status"] == "error" and rows["corrupt.jpg"]["width"] is None
    assert "truncated" in rows["truncated.JPG"]["error"] or "corrupt" in rows["truncated.JPG"]["error"]
    assert rows["vanishing.png"]["error"].startswith("read failed: FileNotFoundError")
    assert all(r["status"] == "ok" and r["n_words"] > 0 for n, r in rows.items() if n.startswith("sample_"))
    words = read_rows(out, "words")
    assert {w["image_uri"].rsplit("/", 1)[1] for w in words} == {n for n in rows if n.startswith("sample_")}

    # the staged path turns the same objects into the same rows
    staged_out = str(tmp_path / "staged")
    staging = run.staging_root(staged_out, DT, "r")
    staged.detect_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    staged.crop_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    staged.recognize_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    staged.publish_shard(
        manifest_url, 0, staging_root=staging, output_root=staged_out, dt=DT, run_id="r", engine=ocr_engine
    )
    run.remove_staging(staging)
    assert sorted(os.listdir(staged_out)) == ["images", "words"]  # _staging pruned
    for table in tables.TABLES:
        assert stable(read_rows(staged_out, table)) == stable(read_rows(out, table)), table


@pytest.mark.slow
def test_rerun_after_a_crash_has_no_duplicates_and_no_gaps(tmp_path):
    src = tmp_path / "src"
    generate(str(src), count=5, seed=5)
    out = tmp_path / "ocr"
    cmd = [
        sys.executable,
        "-m",
        "wildocr.cli",
        "-v",  # progress lines on stderr: the test kills the run at one of them
        "run",
        str(src),
        "--output",
        str(out),
        "--dt",
        DT,
        "--shard-size",
        "2",
        "--chunk-size",
        "1",
        "--prefetch",
        "1",
        "--run-id",
        "crash-test",
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "shard 1: 1/2 images read" in line:  # shard 0 is written, shard 1 is half done
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert (out / "images" / f"dt={DT}" / "part-00000.parquet").exists()
    assert not (out / "images" / f"dt={DT}" / "part-00002.parquet").exists()

    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert (result["images"], result["ok"], result["shards"]) == (5, 5, 3)
    images = read_rows(str(out), "images")
    words = read_rows(str(out), "words")
    uris = [r["image_uri"] for r in images]
    assert sorted(uris) == sorted(o.uri for o in objectstore.list_images(str(src)).images)  # each once
    per_image = Counter(w["image_uri"] for w in words)
    assert all(per_image[r["image_uri"]] == r["n_words"] > 0 for r in images)
    assert len({(w["image_uri"], w["word_index"]) for w in words}) == len(words)
    leftovers = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith("part-")]
    assert leftovers == [] and not (out / "_staging").exists()


def test_run_key_is_path_safe_and_distinct():
    a = run.run_key("manual__2026-11-24T00:00:00+00:00")
    b = run.run_key("manual__2026-11-24T00_00_00_00_00")
    assert a != b and "/" not in a and ":" not in a and "+" not in a
    assert run.staging_root("s3://b/ocr", "2026-11-24", "r/../../x").startswith(
        "s3://b/ocr/_staging/2026-11-24/r_"
    )


def test_rerun_with_fewer_shards_removes_stale_parts(tmp_path):
    root = str(tmp_path / "ocr")
    for shard_no in range(3):
        outputs.write_outputs(root, "2026-11-24", shard_no, *_sample_tables(shard_no), n_shards=3)
    outputs.write_outputs(root, "2026-11-24", 0, *_sample_tables(0), n_shards=1)
    for table in tables.TABLES:
        assert os.listdir(tmp_path / "ocr" / table / "dt=2026-11-24") == ["part-00000.parquet"]
