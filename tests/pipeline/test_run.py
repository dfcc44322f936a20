"""Faults and reruns: killed workers, two runs of one dt at once, S3 errors, missing models.

The claim under test: whatever happens, once the orchestrator's retries are done the tables hold exactly a
clean run's rows (nothing lost, nothing duplicated), and nothing else is left behind. S3 faults are
injected at the HTTP level by tests/faultproxy.py in front of the moto server, so botocore's and s3fs's
real retry logic is what runs; killed workers are real processes ended with SIGKILL. The lease itself (one
run per dt, fencing, racing runs) is tested in tests/storage/test_lease.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from include.sample_data import generate
from tests.helpers import assert_nothing_left_over, read_rows, stable
from wildocr.engine import models
from wildocr.pipeline import fused, run
from wildocr.storage import lease, objectstore, tables

DT = "2026-11-24"
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def assert_exactly(out: Path | str, reference: dict[str, list], storage_options=None, tmp_path=None) -> None:
    """The tables under `out` hold the reference rows (minus run-specific columns), each exactly once."""
    for table in tables.TABLES:
        rows = read_rows(str(out), table, storage_options, tmp_path)
        assert stable(rows) == reference[table], table
    images = read_rows(str(out), "images", storage_options, tmp_path)
    words = read_rows(str(out), "words", storage_options, tmp_path)
    assert len({r["image_uri"] for r in images}) == len(images)
    assert len({(w["image_uri"], w["word_index"]) for w in words}) == len(words)


# Killed workers (staged path; tests/pipeline/test_shard.py covers the fused CLI) ----------------------------

# One worker running the staged tasks of a run in order, as Airflow would; `kill` picks the instant it
# SIGKILLs itself: the n-th detection, or the rename that would publish a file matching a string.
WORKER = r"""
import os, signal, sys
from wildocr.engine import EngineConfig, OCREngine
from wildocr.storage import manifest
from wildocr.pipeline import fused, run, staged

manifest_url, staging, output, dt, run_id, kill, start = sys.argv[1:8]
engine = OCREngine(EngineConfig(device="cpu"))

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if kill.startswith("detect:"):
    calls, real_detect = [0], engine.detect
    def detect(image):
        calls[0] += 1
        if calls[0] == int(kill.split(":")[1]):
            die()
        return real_detect(image)
    engine.detect = detect
elif kill.startswith("replace:"):
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        if kill.split(":", 1)[1] in str(dst):
            die()
        return real_replace(src, dst, *args, **kwargs)
    os.replace = replace

n_shards = manifest.read_manifest(manifest_url)[1].n_shards
tasks = [(stage, n) for n in range(n_shards) for stage in ("detect", "crop", "recognize", "publish")]
for stage, n in tasks[int(start):]:
    print(f"task {tasks.index((stage, n))} {stage} {n}", file=sys.stderr, flush=True)
    if stage == "detect":
        staged.detect_shard(manifest_url, n, staging_root=staging, engine=engine)
    elif stage == "crop":
        staged.crop_shard(manifest_url, n, staging_root=staging, engine=engine)
    elif stage == "recognize":
        staged.recognize_shard(manifest_url, n, staging_root=staging, engine=engine)
    else:
        staged.publish_shard(
            manifest_url, n, staging_root=staging, output_root=output, dt=dt, run_id=run_id, engine=engine
        )
"""


def run_worker(manifest_url: str, staging: str, out: Path, kill: str, start: int) -> tuple[int, int]:
    """Run the worker; returns (exit code, index of the last task it started)."""
    cmd = [
        sys.executable,
        "-c",
        WORKER,
        manifest_url,
        staging,
        str(out),
        DT,
        "scheduled__x",
        kill,
        str(start),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    started = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("task ")]
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(proc.stderr[-3000:])
    return proc.returncode, started[-1] if started else start


@pytest.fixture(scope="module")
def three_photos(tmp_path_factory, ocr_engine) -> tuple[Path, dict[str, list]]:
    """Three generated photos and the rows a clean fused run makes of them (the reference)."""
    src = tmp_path_factory.mktemp("src")
    generate(str(src), count=3, seed=5)
    clean = tmp_path_factory.mktemp("clean")
    manifest_url = str(clean / "manifest.parquet")
    for n in run.build_manifest(str(src), manifest_url, shard_size=2):
        fused.process_shard(
            manifest_url, n, output_root=str(clean / "ocr"), dt=DT, run_id="clean", engine=ocr_engine
        )
    reference = {t: stable(read_rows(str(clean / "ocr"), t)) for t in tables.TABLES}
    assert len(reference["images"]) == 3 and len(reference["words"]) > 10
    return src, reference


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill", "left_behind"),
    [
        ("detect:3", "shard 0 published, shard 1 killed in detection"),
        ("replace:words/dt=2026-11-24/part-00001", "a temporary words file, not yet renamed"),
        ("replace:images/dt=2026-11-24/part-00001", "shard 1's new words beside no images file"),
    ],
)
def test_staged_worker_killed_mid_shard_then_retried_gives_the_clean_tables(
    tmp_path, three_photos, kill, left_behind
):
    src, reference = three_photos
    out = tmp_path / "ocr"
    staging = run.staging_root(str(out), DT, "scheduled__x")
    manifest_url = run.manifest_url(staging)
    assert run.build_manifest(str(src), manifest_url, shard_size=2, dt=DT) == [0, 1]

    code, killed_task = run_worker(manifest_url, staging, out, kill, 0)
    assert code == -signal.SIGKILL, "the worker was not killed"
    part1 = out / "images" / f"dt={DT}" / "part-00001.parquet"
    assert (out / "images" / f"dt={DT}" / "part-00000.parquet").exists() and not part1.exists(), left_behind
    temps = list(out.rglob("*.tmp"))
    assert bool(temps) == kill.startswith("replace:"), temps  # what a mid-write kill leaves

    code, _ = run_worker(manifest_url, staging, out, "none", killed_task)  # the task's retry, then the rest
    assert code == 0
    run.remove_staging(staging)  # the run's finalize step
    assert_exactly(out, reference)
    assert_nothing_left_over(out)


@pytest.mark.slow
def test_two_processes_running_the_same_dt_leave_one_complete_run(tmp_path, three_photos):
    src, reference = three_photos
    out = tmp_path / "ocr"

    def start(run_id: str) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "wildocr.cli",
            "run",
            str(src),
            "--output",
            str(out),
            "--dt",
            DT,
            "--shard-size",
            "2",
            "--run-id",
            run_id,
            "--device",
            "cpu",
        ]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())

    procs = {run_id: start(run_id) for run_id in ("manual__a", "manual__b")}
    outputs = {run_id: p.communicate(timeout=300) for run_id, p in procs.items()}
    codes = {run_id: p.returncode for run_id, p in procs.items()}
    winners = [r for r, c in codes.items() if c == 0]
    assert winners, outputs
    for run_id, code in codes.items():
        if code != 0:  # refused at its manifest, before writing anything
            assert (
                "PartitionBusyError" in outputs[run_id][1]
                and "being written by another run" in outputs[run_id][1]
            )
    run_ids = {r["run_id"] for r in read_rows(str(out), "images")}
    assert len(run_ids) == 1 and run_ids <= set(winners)  # one run's complete output, never a mix
    assert_exactly(out, reference)
    assert_nothing_left_over(out)


# S3 errors --------------------------------------------------------------------------------------------


def test_throttling_and_5xx_are_retried_and_change_nothing(s3_bucket, fault_proxy, ocr_engine, tmp_path):
    options = s3_bucket.storage_options
    source = s3_bucket.url("in/")
    generate(source, count=2, seed=5, storage_options=options)
    clean = run.staging_root(s3_bucket.url("clean"), DT, "clean")
    for n in run.build_manifest(source, run.manifest_url(clean), shard_size=2, storage_options=options):
        fused.process_shard(
            run.manifest_url(clean),
            n,
            output_root=s3_bucket.url("clean"),
            dt=DT,
            run_id="c",
            engine=ocr_engine,
            storage_options=options,
        )
    reference = {t: stable(read_rows(s3_bucket.url("clean"), t, options, tmp_path)) for t in tables.TABLES}

    rules = [
        fault_proxy.fail(method="GET", path=r"list-type=2&prefix=in/", status=503, code="SlowDown", times=2),
        fault_proxy.fail(
            method="GET", path=r"/in/sample_\d+\.(jpg|png)$", status=503, code="SlowDown", times=3
        ),
        fault_proxy.fail(
            method="GET", path=r"/in/sample_\d+\.(jpg|png)$", status=500, code="InternalError", times=1
        ),
        fault_proxy.fail(method="PUT", path=r"/ocr/words/", status=500, code="InternalError", times=1),
        fault_proxy.fail(method="PUT", path=r"/ocr/images/", status=503, code="SlowDown", times=2),
        fault_proxy.fail(method="PUT", path=r"/_lease\.json$", status=503, code="SlowDown", times=1),
    ]
    proxied = fault_proxy.storage_options(options)
    out = s3_bucket.url("ocr")
    staging = run.staging_root(out, DT, "faulty")
    assert run.build_manifest(source, run.manifest_url(staging), shard_size=2, storage_options=proxied) == [0]
    summary = fused.process_shard(
        run.manifest_url(staging),
        0,
        output_root=out,
        dt=DT,
        run_id="f",
        engine=ocr_engine,
        storage_options=proxied,
    )
    run.remove_staging(staging, proxied)
    assert [r.hits for r in rules] == [r.times for r in rules]  # every injected fault was met and survived
    assert summary.errors == 0
    assert_exactly(out, reference, options, tmp_path)
    assert not objectstore.list_files(s3_bucket.url("ocr/_staging"), options)


def test_without_retries_a_store_error_fails_the_shard_and_its_retry_succeeds(
    s3_bucket, fault_proxy, ocr_engine
):
    """A 500 on one image is the store's fault, not the image's: the shard fails (no row says the image is
    bad, nothing is written) and the orchestrator's retry finishes it."""
    options = s3_bucket.storage_options
    source = s3_bucket.url("in/")
    generate(source, count=1, seed=5, storage_options=options)
    no_retries = fault_proxy.storage_options(options, config_kwargs={"retries": {"total_max_attempts": 1}})
    rule = fault_proxy.fail(
        method="GET", path=r"/in/sample_0000\.jpg$", status=500, code="InternalError", times=None
    )
    out = s3_bucket.url("ocr")
    staging = run.staging_root(out, DT, "r")
    run.build_manifest(source, run.manifest_url(staging), shard_size=5, storage_options=no_retries)
    with pytest.raises(OSError, match="internal error"):
        fused.process_shard(
            run.manifest_url(staging),
            0,
            output_root=out,
            dt=DT,
            run_id="r",
            engine=ocr_engine,
            storage_options=no_retries,
        )
    assert rule.hits == 1  # total_max_attempts=1 was honoured: no retry at all
    assert not objectstore.list_files(s3_bucket.url("ocr/images"), options)

    rule.times = rule.hits  # the store recovers; the task is retried
    summary = fused.process_shard(
        run.manifest_url(staging),
        0,
        output_root=out,
        dt=DT,
        run_id="r",
        engine=ocr_engine,
        storage_options=no_retries,
    )
    assert (summary.ok, summary.errors) == (1, 0) and summary.words > 0


def test_deleted_and_forbidden_objects_become_error_rows_on_s3(s3_bucket, fault_proxy, ocr_engine, tmp_path):
    options = s3_bucket.storage_options
    fs = s3_bucket.fs
    for name in ("deleted.jpg", "forbidden.jpg"):
        fs.pipe_file(f"{s3_bucket.name}/in/{name}", b"whatever")
    proxied = fault_proxy.storage_options(options)
    fault_proxy.fail(method="GET", path=r"/in/forbidden\.jpg$", status=403, code="AccessDenied", times=None)
    manifest_url = s3_bucket.url("m/manifest.parquet")
    run.build_manifest(s3_bucket.url("in/"), manifest_url, shard_size=5, storage_options=proxied)
    fs.rm_file(f"{s3_bucket.name}/in/deleted.jpg")
    out = s3_bucket.url("ocr")
    summary = fused.process_shard(
        manifest_url, 0, output_root=out, dt=DT, run_id="r", engine=ocr_engine, storage_options=proxied
    )
    assert (summary.images, summary.errors) == (2, 2)
    rows = {r["image_uri"].rsplit("/", 1)[1]: r["error"] for r in read_rows(out, "images", options, tmp_path)}
    assert rows["deleted.jpg"].startswith("read failed: FileNotFoundError: ")
    assert rows["forbidden.jpg"].startswith("read failed: PermissionError: Access Denied")


def test_a_bucket_that_does_not_exist_is_an_error_not_an_empty_day(s3_bucket):
    """A missing source bucket used to list as an empty day (and a run then cleared the partition)."""
    options = s3_bucket.storage_options
    out = s3_bucket.url("ocr")
    staging = run.staging_root(out, DT, "r")
    with pytest.raises(
        FileNotFoundError, match=r"cannot list s3://no-such-bucket-x/in/: .*bucket does not exist"
    ):
        run.build_manifest(
            "s3://no-such-bucket-x/in/", run.manifest_url(staging), shard_size=5, storage_options=options
        )
    assert lease.holder(out, DT, options) is None  # the failed manifest task gave its fresh lease back
    assert not objectstore.list_files(out, options)

    s3_bucket.fs.pipe_file(f"{s3_bucket.name}/in/a.jpg", b"x")
    elsewhere = run.staging_root("s3://no-such-bucket-y/ocr", DT, "r")
    with pytest.raises(FileNotFoundError, match="bucket does not exist"):
        run.build_manifest(
            s3_bucket.url("in/"), run.manifest_url(elsewhere), shard_size=5, storage_options=options
        )
    # a prefix with no object under it is missing too (a typo must not empty a partition) ...
    with pytest.raises(FileNotFoundError, match="no object under this prefix"):
        run.build_manifest(
            s3_bucket.url("typo/"), run.manifest_url(staging), shard_size=5, storage_options=options
        )
    assert lease.holder(out, DT, options) is None
    # ... while a folder marker ("Create folder") is an empty day
    s3_bucket.fs.pipe_file(f"{s3_bucket.name}/empty/", b"")
    assert (
        run.build_manifest(
            s3_bucket.url("empty/"), run.manifest_url(staging), shard_size=5, storage_options=options
        )
        == []
    )


# Model files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_bad_model_files_stop_the_run_before_any_image_is_read(tmp_path, s3_bucket, fault_proxy, damage):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    if damage == "corrupt":
        for name in (models.DET_MODEL, models.REC_MODEL, models.CLS_MODEL):
            (models_dir / name).write_bytes(b"\x08\x07" + os.urandom(8192))
    generate(s3_bucket.url("in/"), count=1, seed=5, storage_options=s3_bucket.storage_options)
    options = tmp_path / "options.json"
    options.write_text(json.dumps(fault_proxy.storage_options(s3_bucket.storage_options)))
    out = s3_bucket.url("ocr")
    cmd = [
        sys.executable,
        "-m",
        "wildocr.cli",
        "run",
        s3_bucket.url("in/"),
        "--output",
        out,
        "--dt",
        DT,
        "--run-id",
        "r",
        "--device",
        "cpu",
        "--storage-options",
        f"@{options}",
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**_env(), "WILDOCR_MODELS_DIR": str(models_dir)},
        timeout=120,
    )
    assert proc.returncode != 0
    error = [line for line in proc.stderr.splitlines() if "ModelFileError" in line]
    assert error and any(name in error[-1] for name in (models.DET_MODEL, models.REC_MODEL, models.CLS_MODEL))
    assert damage != "missing" or "model file not found" in error[-1]
    assert fault_proxy.requests() == []  # not a listing, not a lease, not one image read
    assert lease.holder(out, DT, s3_bucket.storage_options) is None


# Planning (no Airflow) -------------------------------------------------------------------------------


def _photos(folder, n: int) -> str:
    folder.mkdir()
    for i in range(n):
        (folder / f"p{i:02d}.jpg").write_bytes(b"listed, never read here")
    return str(folder)


def test_every_shard_spec_carries_the_model_folder_of_the_run(tmp_path):
    """The manifest task checks the folder once and each shard task loads what its spec says; a spec
    written before model folders existed reads as the stock weights."""
    plan = run.plan_run(
        {"2026-03-01": _photos(tmp_path / "a", 3)},
        str(tmp_path / "ocr"),
        "m__1",
        shard_size=2,
        model_dir="/m/ft",
    )
    specs = plan.specs()
    assert [s.model_dir for s in specs] == ["/m/ft", "/m/ft"]
    assert run.RunPlan.from_xcom(plan.to_xcom()).model_dir == "/m/ft"
    old = {k: v for k, v in specs[0].to_xcom().items() if k != "model_dir"}
    assert run.ShardSpec.from_xcom(old).model_dir is None
    run.remove_staging(plan.staging["2026-03-01"])


def test_a_run_over_the_shard_limit_is_planned_again_with_larger_shards(tmp_path):
    prefixes = {"2026-03-01": _photos(tmp_path / "a", 10), "2026-03-02": _photos(tmp_path / "b", 3)}
    root = str(tmp_path / "ocr")
    plan = run.plan_run(prefixes, root, "manual__1", shard_size=2, max_shards=4)
    assert sum(map(len, plan.shards.values())) <= 4
    assert plan.shard_size == 7  # ceil(7 shards * 2 images / (4 limit - 2 dates))
    assert plan.shards == {"2026-03-01": [0, 1], "2026-03-02": [0]}
    specs = plan.specs()
    assert [(s.dt, s.shard) for s in specs] == [("2026-03-01", 0), ("2026-03-01", 1), ("2026-03-02", 0)]
    assert run.RunPlan.from_xcom(plan.to_xcom()) == plan
    assert run.ShardSpec.from_xcom(specs[0].to_xcom()) == specs[0]
    assert {s.model_dir for s in specs} == {None}  # the stock weights
    for dt in plan.dts:  # the plan holds each partition's lease until the run ends
        assert lease.holder(root, dt)["owner"].endswith("manifest.parquet")
        run.remove_staging(plan.staging[dt])
        assert lease.holder(root, dt) is None


def test_a_plan_no_retry_can_fix_is_refused_before_any_lease(tmp_path):
    folder = _photos(tmp_path / "a", 2)
    root = str(tmp_path / "ocr")
    with pytest.raises(ValueError, match="one source prefix for several"):
        run.plan_run({"2026-03-01": folder, "2026-03-02": folder}, root, "r", shard_size=1)
    with pytest.raises(ValueError, match="cannot fit"):
        run.plan_run({"2026-03-01": folder}, root, "r", shard_size=1, max_shards=1)
    assert lease.holder(root, "2026-03-01") is None


def test_a_failed_plan_gives_back_the_leases_it_took(tmp_path):
    prefixes = {"2026-03-01": _photos(tmp_path / "a", 1), "2026-03-02": str(tmp_path / "missing")}
    root = str(tmp_path / "ocr")
    with pytest.raises(FileNotFoundError):
        run.plan_run(prefixes, root, "r", shard_size=1)
    assert lease.holder(root, "2026-03-01") is None and lease.holder(root, "2026-03-02") is None
