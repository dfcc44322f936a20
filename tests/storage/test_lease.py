"""`storage/lease.py`: one run per dt, fenced writes, and exactly one winner among racing runs."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import assert_nothing_left_over, read_rows
from wildocr.pipeline import fused, run, staged
from wildocr.storage import lease, objectstore
from wildocr.storage.lease import PartitionBusyError

DT = "2026-11-24"


def _broken_source(root: Path, n: int = 4) -> Path:
    """Objects that are not images: shards that run in milliseconds (the lease logic does not care)."""
    src = root / "src"
    src.mkdir()
    for i in range(n):
        (src / f"obj-{i}.jpg").write_bytes(f"not an image {i}".encode())
    return src


def _run(src: Path, out: Path, run_id: str, engine, shard_size: int = 2) -> str:
    staging = run.staging_root(str(out), DT, run_id)
    for n in run.build_manifest(str(src), run.manifest_url(staging), shard_size=shard_size, dt=DT):
        fused.process_shard(
            run.manifest_url(staging), n, output_root=str(out), dt=DT, run_id=run_id, engine=engine
        )
    return staging


def test_a_second_run_of_a_dt_is_refused_until_the_first_finishes(tmp_path, ocr_engine):
    src = _broken_source(tmp_path)
    out = tmp_path / "ocr"
    first = run.staging_root(str(out), DT, "scheduled__first")
    second = run.staging_root(str(out), DT, "manual__second")
    assert run.build_manifest(str(src), run.manifest_url(first), shard_size=2, dt=DT) == [0, 1]
    with pytest.raises(PartitionBusyError, match=r"dt=2026-11-24 .* being written by another run") as refused:
        run.build_manifest(str(src), run.manifest_url(second), shard_size=2, dt=DT)
    assert run.run_key("scheduled__first") in str(refused.value)
    assert not objectstore.exists(run.manifest_url(second))  # refused before writing anything
    # the holder itself may take it again (a retried manifest task), and its shards write
    assert run.build_manifest(str(src), run.manifest_url(first), shard_size=2, dt=DT) == [0, 1]
    fused.process_shard(
        run.manifest_url(first), 0, output_root=str(out), dt=DT, run_id="first", engine=ocr_engine
    )
    with pytest.raises(PartitionBusyError):  # still refused while the first is half done
        run.build_manifest(str(src), run.manifest_url(second), shard_size=2, dt=DT)
    fused.process_shard(
        run.manifest_url(first), 1, output_root=str(out), dt=DT, run_id="first", engine=ocr_engine
    )
    run.remove_staging(first)  # finalize releases the lease
    assert lease.holder(str(out), DT) is None

    run.remove_staging(_run(src, out, "manual__second", ocr_engine, shard_size=3))
    rows = read_rows(str(out), "images")
    assert Counter(r["run_id"] for r in rows) == {"manual__second": 4}  # one run's output, not a mix
    assert_nothing_left_over(out)


def test_a_run_that_lost_its_lease_cannot_write_any_more(tmp_path, ocr_engine):
    """Fencing: an operator removed a hung run's lease and started another; the old run wakes up."""
    src = _broken_source(tmp_path)
    out = tmp_path / "ocr"
    old = run.staging_root(str(out), DT, "scheduled__old")
    old_manifest = run.manifest_url(old)
    run.build_manifest(str(src), old_manifest, shard_size=2, dt=DT)
    staged.detect_shard(old_manifest, 0, staging_root=old, engine=ocr_engine)
    assert lease.force_release(str(out), DT)["owner"] == objectstore.canonical(old_manifest)

    new = run.staging_root(str(out), DT, "manual__new")
    run.build_manifest(str(src), run.manifest_url(new), shard_size=4, dt=DT)
    assert not objectstore.list_files(old)  # the dead run's staging was removed by the new lease holder
    with pytest.raises(PartitionBusyError):
        fused.process_shard(old_manifest, 1, output_root=str(out), dt=DT, run_id="old", engine=ocr_engine)
    with pytest.raises(PartitionBusyError):
        staged.detect_shard(old_manifest, 1, staging_root=old, engine=ocr_engine)
    with pytest.raises(PartitionBusyError):
        staged.publish_shard(
            old_manifest, 0, staging_root=old, output_root=str(out), dt=DT, run_id="old", engine=ocr_engine
        )
    fused.process_shard(
        run.manifest_url(new), 0, output_root=str(out), dt=DT, run_id="new", engine=ocr_engine
    )
    run.remove_staging(new)
    assert Counter(r["run_id"] for r in read_rows(str(out), "images")) == {"new": 4}
    assert_nothing_left_over(out)


def test_exactly_one_of_many_racing_runs_gets_the_lease(tmp_path, s3_bucket):
    out = tmp_path / "ocr"
    barrier = threading.Barrier(8)
    results: list[str] = []

    def contender(i: int) -> None:
        barrier.wait()
        try:
            lease.acquire(str(out), DT, f"file:///run-{i}/manifest.parquet")
            results.append("won")
        except PartitionBusyError:
            results.append("refused")

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["refused"] * 7 + ["won"]
    assert [p.name for p in (out / "_staging" / DT).iterdir()] == [lease.LEASE_NAME]  # no temp file left

    # S3: the create is one conditional PUT (If-None-Match: *); the second run is refused by the store
    root, options = s3_bucket.url("ocr"), s3_bucket.storage_options
    lease.acquire(root, DT, "s3://x/run-a/manifest.parquet", options)
    with pytest.raises(PartitionBusyError, match="run-a"):
        lease.acquire(root, DT, "s3://x/run-b/manifest.parquet", options)
    assert lease.release(root, DT, "s3://x/run-b/manifest.parquet", options) is False  # not b's to release
    assert lease.release(root, DT, "s3://x/run-a/manifest.parquet", options) is True
    lease.acquire(root, DT, "s3://x/run-b/manifest.parquet", options)
