"""The DAGs end to end with real Airflow (`dag.test()` on SQLite), real OCR and real stores.

Stores: the embedded local default (no Variable, no Param) and a moto S3 server on loopback reached only
through the `wildocr_s3` Airflow connection. Tables are read back with DuckDB and compared with the sample
generator's ground truth: at least WORD_RECALL of the ground-truth words of the clean samples must come out
exactly (case-sensitive, per image, as a multiset).

A backfill: `airflow backfill create --dry-run` (the real CLI) says which logical dates a backfill of three
days creates; each of those dates is then run with dag.test(), because executing backfill runs needs a
scheduler and an API server. Each run must write exactly its own partition.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pendulum
import pytest

from include.sample_data import generate
from tests.helpers import WORD_RECALL, _recall
from wildocr.pipeline.run import staging_root

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SEED = 7


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def _run(dag_id: str, logical_date: pendulum.DateTime | None, conf: dict[str, Any] | None = None):
    """dag.test() and the task states; a failed task is only logged by dag.test, so assert the run state."""
    dr = _dag(dag_id).test(logical_date=logical_date, run_conf=conf or {})
    states = {(ti.task_id, ti.map_index): ti.state for ti in dr.get_task_instances()}
    assert dr.state == "success", states
    return dr, states


def _con(storage_options: dict | None = None) -> duckdb.DuckDBPyConnection:
    """DuckDB reading through fsspec (s3fs for s3://), so no DuckDB extension has to be downloaded."""
    con = duckdb.connect()
    if storage_options is not None:
        import s3fs

        con.register_filesystem(s3fs.S3FileSystem(skip_instance_cache=True, **storage_options))
    return con


def _read(con: duckdb.DuckDBPyConnection, root: str, table: str) -> list[dict]:
    rel = con.sql(f"SELECT * FROM read_parquet('{root}/{table}/*/*.parquet', hive_partitioning = true)")
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def _dt(value: Any) -> str:
    return str(value)[:10]  # hive partition values come back as DATE or str depending on the DuckDB version


def test_nightly_local_staged_then_rerun_fused(wildocr_home: Path) -> None:
    """Embedded default store, a corrupt file, a 2-page PDF, 3 staged shards; a fused rerun replaces (1
    shard, no dups), and both paths give each page its row and its words."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from PIL import Image

    from tests.helpers import pdf_bytes

    day = "2026-03-01"
    photos = wildocr_home / "photos" / day
    truth = generate(str(photos), count=3, seed=SEED)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    pages = [Image.open(photos / t["image"]).convert("RGB") for t in truth[:2]]
    (photos / "letter.pdf").write_bytes(pdf_bytes(pages))
    root = str(wildocr_home / "ocr")

    dr, states = _run("wildocr_nightly", pendulum.datetime(2026, 3, 1, 2, tz="UTC"), {"shard_size": 2})
    for step in ("ocr.detect", "ocr.crop", "ocr.recognize", "ocr.publish"):
        assert [states[(step, i)] for i in range(3)] == ["success"] * 3, states
    assert states[("finalize", -1)] == "success"

    con = _con()
    images = _read(con, root, "images")
    words = _read(con, root, "words")
    assert len(images) == 6 and {_dt(r["dt"]) for r in images} == {day}
    letter = sorted((r["page"], r["n_words"]) for r in images if r["image_uri"].endswith("letter.pdf"))
    assert [page for page, _ in letter] == [1, 2] and all(n > 0 for _, n in letter)
    for (page, n_words), t in zip(
        letter, truth[:2], strict=True
    ):  # each page: its photo's words (JPEG in the PDF)
        mine = Counter(
            r["text"] for r in words if r["image_uri"].endswith("letter.pdf") and r["page"] == page
        )
        theirs = Counter(r["text"] for r in words if r["image_uri"].endswith(t["image"]))
        assert sum(mine.values()) == n_words and sum((mine & theirs).values()) >= 0.8 * sum(theirs.values())
    errors = [r for r in images if r["status"] != "ok"]
    assert [Path(r["image_uri"]).name for r in errors] == ["broken.jpg"] and errors[0]["error"]
    assert all(r["run_id"] == dr.run_id for r in images)
    recall = _recall(truth, words)
    print(f"word recall {recall:.3f}")
    assert recall >= WORD_RECALL, f"word recall {recall:.2f}"
    assert not Path(staging_root(root, day, dr.run_id)).exists(), "staging left behind"
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == dr.run_id).all()
        extras = {e.asset.uri: e.extra for e in events}
    assert set(extras) == {"wildocr://tables/images", "wildocr://tables/words"}
    assert extras["wildocr://tables/words"]["partitions"] == [f"{root}/words/dt={day}"]
    assert (extras["wildocr://tables/images"]["images"], extras["wildocr://tables/images"]["objects"]) == (
        6,
        5,
    )

    # Same logical date again, fused, bigger shards: the partition is replaced, part-00001 must go.
    dr2, states2 = _run(
        "wildocr_nightly", pendulum.datetime(2026, 3, 1, 2, tz="UTC"), {"mode": "fused", "shard_size": 5}
    )
    assert states2[("ocr.detect", 0)] == "success" and ("ocr.detect", 1) not in states2
    assert {states2[(s, 0)] for s in ("ocr.crop", "ocr.recognize", "ocr.publish")} == {"skipped"}
    images2 = _read(con, root, "images")
    words2 = _read(con, root, "words")
    assert len(images2) == 6 and len({(r["image_uri"], r["page"]) for r in images2}) == 6
    assert {r["run_id"] for r in images2} == {dr2.run_id}
    assert [p.name for p in (wildocr_home / "ocr" / "words" / f"dt={day}").iterdir()] == [
        "part-00000.parquet"
    ]

    # Both modes run the same engine on the same pixels: the same words come out.
    def texts(rows: list[dict]) -> Counter:
        return Counter((Path(r["image_uri"]).name, r["page"], r["text"]) for r in rows)

    assert texts(words2) == texts(words)


@pytest.mark.parametrize(
    ("tables_on", "mode"),
    [("s3", "staged"), ("local", "fused")],  # staged: staging round trips on S3 too; local: mixed stores
)
def test_nightly_on_s3_through_the_connection(
    s3_server, s3_bucket, monkeypatch, capfd, caplog, tmp_path: Path, tables_on: str, mode: str
) -> None:
    """Photos (and tables) on S3; the only credentials are in AIRFLOW_CONN_WILDOCR_S3 and never leak."""
    secret = "wildocr-e2e-secret-4f9c1b"  # moto accepts any key pair; a unique one can be searched for
    conn = {
        "conn_type": "aws",
        "login": "wildocr-e2e-key",
        "password": secret,
        "extra": {"endpoint_url": s3_server.endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_WILDOCR_S3", json.dumps(conn))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # the connection, not the environment, must carry the auth
    monkeypatch.setenv("AIRFLOW_VAR_WILDOCR_SOURCE_PREFIX", f"s3://{s3_bucket.name}/photos/{{{{ ds }}}}/")
    root = f"s3://{s3_bucket.name}/lake/ocr" if tables_on == "s3" else str(tmp_path / "lake")
    monkeypatch.setenv("AIRFLOW_VAR_WILDOCR_OUTPUT_ROOT", root)
    day = "2026-03-02"
    truth = generate(
        s3_bucket.url(f"photos/{day}/"), count=3, seed=SEED + 1, storage_options=s3_bucket.storage_options
    )

    dr, _ = _run("wildocr_nightly", pendulum.datetime(2026, 3, 2, 2, tz="UTC"), {"mode": mode})

    con = _con(s3_bucket.storage_options if tables_on == "s3" else None)
    images = _read(con, root, "images")
    words = _read(con, root, "words")
    assert len(images) == 3 and all(r["status"] == "ok" for r in images)
    assert all(r["image_uri"].startswith(f"s3://{s3_bucket.name}/photos/{day}/") for r in images)
    recall = _recall(truth, words)
    print(f"word recall {recall:.3f}")
    assert recall >= WORD_RECALL, f"word recall {recall:.2f}"
    if tables_on == "s3":
        fs = s3_bucket.fs
        fs.invalidate_cache()
        assert not fs.find(staging_root(root, day, dr.run_id)), "staging left behind"
    else:
        assert not Path(staging_root(root, day, dr.run_id)).exists(), "staging left behind"

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter(XComModel.run_id == dr.run_id).all()
    assert xcoms and secret not in json.dumps([x.value for x in xcoms], default=str)
    out, err = capfd.readouterr()
    logs = caplog.text + out + err
    assert "shard 0 " in logs  # the task logs were captured ...
    assert secret not in logs  # ... and the secret is not in them
    log_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    assert not any(secret in p.read_text(errors="replace") for p in log_dir.rglob("*") if p.is_file())

    # OpenLineage (file transport, set up in tests/conftest.py): the photos are one S3 dataset, no secret
    lineage_file = Path(json.loads(os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"])["log_file_path"])
    lineage = [json.loads(line) for line in lineage_file.read_text().splitlines() if line.strip()]
    inputs = {
        (d["namespace"], d["name"])
        for e in lineage
        if e["run"]["facets"].get("airflow", {}).get("dagRun", {}).get("run_id") == dr.run_id
        for d in e.get("inputs", [])
    }
    assert inputs == {(f"s3://{s3_bucket.name}", f"photos/{day}/")}
    assert secret not in lineage_file.read_text()


def test_backfill_three_dates_write_three_partitions(wildocr_home: Path, tmp_path: Path) -> None:
    """The dates `airflow backfill create` picks, run one by one: one partition each, nothing else."""
    root = tmp_path / "lake"
    days = ["2026-03-03", "2026-03-04", "2026-03-05"]
    for i, day in enumerate(days):
        generate(str(tmp_path / "in" / day), count=1, seed=SEED + 10 + i)
    conf = {"source_prefix": f"{tmp_path}/in/{{{{ ds }}}}/", "output_root": str(root), "mode": "fused"}

    def airflow(*args: str) -> str:
        cmd = [sys.executable, "-m", "airflow", *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy()).stdout

    airflow("dags", "reserialize")  # what the dag-processor does; backfill reads the serialized DAG
    out = airflow(
        "backfill", "create", "--dag-id", "wildocr_nightly",
        "--from-date", days[0], "--to-date", f"{days[-1]}T23:59:59", "--dry-run",
    )  # fmt: skip
    logical = re.findall(r"\|\s*(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+00:00)\s*\|", out)
    assert [d[:10] for d in logical] == days, out
    for stamp in logical:
        _run("wildocr_nightly", pendulum.parse(stamp), conf)

    images = _read(_con(), str(root), "images")
    by_dt = Counter(_dt(r["dt"]) for r in images)
    assert by_dt == {day: 1 for day in days}
    assert all(f"/in/{_dt(r['dt'])}/" in r["image_uri"] for r in images), "a date read another date's photos"
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"dt={d}" for d in days]


def test_backfill_dag_date_range_with_templated_prefix(tmp_path: Path) -> None:
    """wildocr_backfill: one manual run over dt..dt_end, photos under a ds_nodash layout."""
    root = tmp_path / "lake"
    days = ["2025-12-30", "2025-12-31"]
    for i, day in enumerate(days):
        generate(str(tmp_path / "archive" / day.replace("-", "")), count=1, seed=SEED + 20 + i)
    conf = {
        "source_prefix": f"file://{tmp_path}/archive/{{{{ ds_nodash }}}}/",
        "dt": days[0],
        "dt_end": days[1],
        "output_root": str(root),
        "mode": "staged",
    }
    _, states = _run("wildocr_backfill", None, conf)  # a manual run without logical date
    assert sum(1 for (task, _) in states if task == "ocr.publish") == 2
    images = _read(_con(), str(root), "images")
    assert sorted(_dt(r["dt"]) for r in images) == days


def test_shards_grow_to_fit_max_map_length(tmp_path: Path, monkeypatch) -> None:
    """More shards than [core] max_map_length would fail the mapping: the manifest grows the shards."""
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")
    photos = tmp_path / "in" / "2026-03-06"
    photos.mkdir(parents=True)
    for i in range(7):
        (photos / f"{i}.jpg").write_bytes(b"listed, never decoded")
    conf = {
        "source_prefix": f"{tmp_path}/in/{{{{ ds }}}}/",
        "output_root": str(tmp_path / "lake"),
        "shard_size": 1,
    }
    dr = _dag("wildocr_nightly").test(
        logical_date=pendulum.datetime(2026, 3, 6, 2, tz="UTC"), run_conf=conf, mark_success_pattern=r"^ocr\."
    )
    assert dr.state == "success"
    specs = next(ti for ti in dr.get_task_instances() if ti.task_id == "manifest").xcom_pull(
        task_ids="manifest"
    )
    assert 1 <= len(specs) <= 3  # 7 shards of 1 would have failed the run
    assert sum(1 for ti in dr.get_task_instances() if ti.task_id == "ocr.detect") == len(specs)


def test_empty_day_succeeds_and_empties_its_partition(tmp_path: Path) -> None:
    """No photos for a date (its folder is there, empty): the run succeeds, no shard runs, and an older
    run's rows for it are gone. (A folder that is not there fails the run instead: see
    tests/e2e/test_hostile_inputs.py.)"""
    old = tmp_path / "lake" / "images" / "dt=2026-03-07" / "part-00000.parquet"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"rows of an earlier run")
    (tmp_path / "nothing" / "2026-03-07").mkdir(parents=True)
    conf = {"source_prefix": f"{tmp_path}/nothing/{{{{ ds }}}}/", "output_root": f"{tmp_path}/lake"}
    _, states = _run("wildocr_nightly", pendulum.datetime(2026, 3, 7, 2, tz="UTC"), conf)
    assert states[("finalize", -1)] == "success"
    assert not any(task.startswith("ocr.") and state == "success" for (task, _), state in states.items())
    assert not old.exists()


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


def test_engine_options_reach_the_tasks_and_a_bad_one_fails_the_run_at_once(tmp_path: Path) -> None:
    """The `engine_options` Param: checked by the manifest task (an unknown key fails the run before any
    listing), then used by every shard task (the verifier switched off keeps at least as many words)."""
    generate(str(tmp_path / "in" / "2026-03-08"), count=1, seed=SEED + 3)
    when = pendulum.datetime(2026, 3, 8, 2, tz="UTC")
    base = {"source_prefix": f"{tmp_path}/in/{{{{ ds }}}}/", "mode": "fused"}

    bad = {**base, "output_root": str(tmp_path / "bad"), "engine_options": {"verify_word": False}}
    dr = _dag("wildocr_nightly").test(logical_date=when, run_conf=bad)
    states = {(ti.task_id, ti.map_index): ti.state for ti in dr.get_task_instances()}
    assert dr.state == "failed" and states[("manifest", -1)] == "failed", states
    assert not (tmp_path / "bad").exists()  # no lease, no manifest, no rows

    counts = {}
    for name, options in (("default", {}), ("floor_only", {"verify_words": False})):
        root = tmp_path / name
        _run("wildocr_nightly", when, {**base, "output_root": str(root), "engine_options": options})
        counts[name] = len(_read(_con(), str(root), "words"))
    assert counts["floor_only"] >= counts["default"] > 0, counts


def test_a_model_folder_reaches_every_shard_task_and_a_broken_one_fails_the_run_at_once(
    tmp_path: Path, monkeypatch
) -> None:
    """The `model_dir` Param, else the `wildocr_model_dir` Variable: checked by the manifest task (a
    broken folder fails the run before any listing), recorded in the shard specs, loaded by the staged
    and the fused shard tasks alike (the rows name the folder's detector and its hash)."""
    import hashlib

    from tests.helpers import model_folder

    generate(str(tmp_path / "in" / "2026-03-08"), count=1, seed=SEED + 4)
    when = pendulum.datetime(2026, 3, 8, 2, tz="UTC")
    base = {
        "source_prefix": f"{tmp_path}/in/{{{{ ds }}}}/",
        "engine_options": {"det_precision": "fp32"},  # no int8 build of the folder's detector (15 s)
    }
    folder = model_folder(tmp_path / "ic15-ft", det_bias_shift=-2.0)
    det_sha256 = hashlib.sha256((folder / "det.onnx").read_bytes()).hexdigest()

    monkeypatch.setenv("AIRFLOW_VAR_WILDOCR_MODEL_DIR", str(tmp_path / "in"))  # no manifest.json there
    dr = _dag("wildocr_nightly").test(
        logical_date=when, run_conf={**base, "output_root": str(tmp_path / "bad")}
    )
    states = {(ti.task_id, ti.map_index): ti.state for ti in dr.get_task_instances()}
    assert dr.state == "failed" and states[("manifest", -1)] == "failed", states
    assert not (tmp_path / "bad").exists()  # no lease, no manifest, no rows

    runs = (
        ("staged", {"mode": "staged", "model_dir": str(folder)}),  # the Param wins over the Variable
        ("fused", {"mode": "fused"}),  # the Variable, when the Param is unset
    )
    for name, conf in runs:
        if name == "fused":
            monkeypatch.setenv("AIRFLOW_VAR_WILDOCR_MODEL_DIR", str(folder))
        _run("wildocr_nightly", when, {**base, **conf, "output_root": str(tmp_path / name)})
        rows = _read(_con(), str(tmp_path / name), "images")
        assert rows and all(r["status"] == "ok" and r["n_words"] > 0 for r in rows), rows
        assert {(r["det_model"], r["det_sha256"]) for r in rows} == {("ic15-ft/det.onnx", det_sha256)}
