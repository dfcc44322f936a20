"""Every DAG in dags/ parses, puts GPU work on the gpu queue and pool, and resolves its arguments right.

No database and no OCR here: this file runs in seconds and is what CI should run first.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest

ROOT = Path(__file__).resolve().parents[2]
OCR_DAG_IDS = {"wildocr_nightly", "wildocr_backfill"}
DAG_IDS = OCR_DAG_IDS | {"wildocr_daily_words"}  # + the example consumer of the words Asset
GPU_TASKS = {"ocr.detect", "ocr.recognize"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_imports(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(OCR_DAG_IDS))
def test_gpu_steps_on_gpu_queue_and_pool_others_not(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert {t.task_id for t in dag.tasks} == {"manifest", "finalize"} | {
        f"ocr.{s}" for s in ("detect", "crop", "recognize", "publish")
    }
    for t in dag.tasks:
        if t.task_id in GPU_TASKS:
            assert (t.queue, t.pool) == ("gpu", "gpu"), t.task_id
        else:
            assert t.queue == "default" and t.pool == "default_pool", t.task_id
        assert t.retries >= 2 and t.retry_exponential_backoff > 1, t.task_id
    assert dag.get_task("finalize").trigger_rule == "none_failed"  # fused mode skips the staged steps
    assert {a.uri for a in dag.get_task("finalize").outlets} == {
        "wildocr://tables/images",
        "wildocr://tables/words",
    }


def test_schedules(dagbag) -> None:
    from airflow.sdk import CronDataIntervalTimetable

    nightly = dagbag.dags["wildocr_nightly"]
    assert isinstance(nightly.timetable, CronDataIntervalTimetable)  # ds = the day whose photos are read
    assert nightly.timetable.expression == "0 2 * * *" and str(nightly.timetable.timezone) == "UTC"
    assert nightly.catchup is False
    assert dagbag.dags["wildocr_backfill"].schedule is None  # manual only


def test_consumer_runs_once_per_words_partition(dagbag) -> None:
    from airflow.sdk import PartitionedAssetTimetable

    consumer = dagbag.dags["wildocr_daily_words"]
    assert isinstance(consumer.timetable, PartitionedAssetTimetable)  # one run per partition key (dt)
    assert consumer.timetable.asset_condition.uri == "wildocr://tables/words"


@pytest.mark.parametrize(
    ("dag_id", "conf", "ok"),
    [
        ("wildocr_nightly", {}, True),
        ("wildocr_nightly", {"mode": "fused", "dt": "2026-03-01", "shard_size": 16}, True),
        ("wildocr_nightly", {"mode": "bogus"}, False),
        ("wildocr_nightly", {"dt": "2026-13-45"}, False),
        ("wildocr_nightly", {"shard_size": 0}, False),
        ("wildocr_nightly", {"engine_options": {"verify_words": False, "det_limit_side": 960}}, True),
        ("wildocr_nightly", {"engine_options": "verify_words=false"}, False),  # an object, not a string
        ("wildocr_backfill", {"source_prefix": "s3://x/{{ ds }}/", "engine_options": {"workers": 1}}, True),
        ("wildocr_backfill", {}, False),  # a source prefix is required
        ("wildocr_nightly", {"model_dir": "/models/ic15-ft"}, True),
        ("wildocr_backfill", {"source_prefix": "s3://x/{{ ds }}/", "model_dir": None}, True),
        ("wildocr_nightly", {"model_dir": ["/models/ic15-ft"]}, False),
        ("wildocr_backfill", {"source_prefix": "s3://old/{{ ds }}/", "dt": "2025-01-01"}, True),
    ],
)
def test_params_are_validated(dagbag, dag_id: str, conf: dict, ok: bool) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dagbag.dags[dag_id].params)
    if ok:
        params.update(conf)
        params.validate()
    else:
        with pytest.raises(ParamValidationError):
            params.update(conf)  # validates the new values
            params.validate()  # validates the rest (a required Param left unset)


def test_parsing_does_not_load_the_ocr_stack() -> None:
    """The dag-processor re-parses these files all day: no ONNX Runtime, OpenCV or pyarrow at import.

    Nor DuckDB or the OpenLineage client: the consumer and the lineage methods import them when they run.
    """
    heavy = ("onnxruntime", "cv2", "pyarrow", "wildocr.engine", "duckdb", "openlineage.client.event_v2")
    code = (
        "import runpy, sys\n"
        f"for f in {sorted(DAG_IDS)}: runpy.run_path(f'{ROOT}/dags/{{f}}.py')\n"
        f"print(sorted(m for m in {heavy} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# --- argument resolution (pure functions the ManifestOperator uses) ---------------------------------------


def _context(ds: str | None, run_after: str = "2026-03-10T10:00:00+00:00") -> dict:
    return {"ds": ds, "dag_run": SimpleNamespace(run_after=pendulum.parse(run_after)), "params": {}}


@pytest.mark.parametrize(
    ("dt_param", "dt_end", "ds", "run_after", "expected"),
    [
        (None, None, "2026-03-01", "2026-03-02T02:00:00+00:00", ["2026-03-01"]),  # scheduled / backfill
        ("2026-02-01", None, "2026-03-01", "2026-03-02T02:00:00+00:00", ["2026-02-01"]),  # Param wins
        (None, None, None, "2026-03-10T10:00:00+00:00", ["2026-03-09"]),  # manual, no logical date
        (None, None, None, "2026-03-10T00:30:00+01:00", ["2026-03-08"]),  # run_after is taken in UTC
        ("None", "", None, "2026-03-10T10:00:00+00:00", ["2026-03-09"]),  # string-rendered unset Params
        (
            "2025-12-30",
            "2026-01-01",
            None,
            "2026-03-10T10:00:00+00:00",
            ["2025-12-30", "2025-12-31", "2026-01-01"],
        ),
    ],
)
def test_resolve_dates(dt_param, dt_end, ds, run_after, expected) -> None:
    from wildocr.airflow.params import resolve_dates

    assert resolve_dates(dt_param, dt_end, _context(ds, run_after)) == expected


@pytest.mark.parametrize(("dt_param", "dt_end"), [("2026-03-02", "2026-03-01"), ("yesterday", None)])
def test_resolve_dates_rejects(dt_param, dt_end) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from wildocr.airflow.params import resolve_dates

    with pytest.raises(AirflowFailException):
        resolve_dates(dt_param, dt_end, _context("2026-03-01"))


def test_render_source_prefix() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from wildocr.airflow.params import render_source_prefix

    ctx = _context(None)
    assert render_source_prefix("s3://b/in/{{ ds }}/", "2026-03-01", ctx) == "s3://b/in/2026-03-01/"
    assert render_source_prefix("s3://b/{{ ds_nodash }}", "2026-03-01", ctx) == "s3://b/20260301"
    assert render_source_prefix("/x/{{ ds[:4] }}/{{ ds[5:7] }}/", "2026-03-01", ctx) == "/x/2026/03/"
    with pytest.raises(Exception, match="logical_date"):  # undefined in a manual run: fail, don't guess
        render_source_prefix("s3://b/{{ logical_date.year }}/", "2026-03-01", ctx)
    assert render_source_prefix("/x/{{ year }}/{{ month }}/{{ day }}/", "2026-03-01", ctx) == "/x/2026/03/01/"
    # only what a prefix needs: no Variables, connections or macros, and no way around the sandbox
    for leak in ("{{ var.value.secret }}", "{{ conn.x.password }}", "{{ macros.ds_add(ds, 1) }}"):
        with pytest.raises(AirflowFailException, match=r"source prefix template: '.+' is undefined"):
            render_source_prefix(f"s3://b/{leak}/", "2026-03-01", ctx)
    with pytest.raises(AirflowFailException, match="source prefix template"):
        render_source_prefix("{{ ds.__class__.__mro__ }}", "2026-03-01", ctx)


def test_embedded_default_beside_airflow_home(monkeypatch, tmp_path: Path) -> None:
    from wildocr.airflow import settings

    monkeypatch.delenv("WILDOCR_HOME")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    assert settings.wildocr_home() == tmp_path / "data"
    assert settings.default_output_root() == f"{tmp_path}/data/ocr"
    assert settings.default_source_prefix() == f"{tmp_path}/data/photos/{{{{ ds }}}}/"
    monkeypatch.setenv("WILDOCR_HOME", str(tmp_path / "elsewhere"))
    assert settings.wildocr_home() == tmp_path / "elsewhere"


def test_storage_options_only_for_s3() -> None:
    from wildocr.airflow.hooks import storage_options_for

    assert storage_options_for(["/data/photos/", "file:///data/ocr", "memory://x"]) is None
    assert storage_options_for(["s3://bucket/photos/"], conn_id=None) == {}  # s3fs's own credential chain


def test_run_figures_add_up_shard_summaries_per_dt() -> None:
    """finalize's event figures: summaries only (a staged detect returns a URL, a skipped step nothing)."""
    from wildocr.pipeline.outputs import ShardSummary, run_figures

    def summary(dt: str, images: int, errors: int, words: int, objects: int) -> dict:
        return ShardSummary(
            shard=0, dt=dt, images=images, ok=images - errors, errors=errors, skipped=0, words=words,
            det_seconds=1.0, rec_seconds=1.0, seconds=2.0, images_url=f"/r/images/dt={dt}/part-00000.parquet",
            words_url=f"/r/words/dt={dt}/part-00000.parquet", images_bytes=1, words_bytes=1,
            models={"det_sha256": "d" * 64}, objects=objects,
        ).to_xcom()  # fmt: skip

    xcoms = [
        "file:///r/_staging/detections/part-00000.parquet",
        None,
        summary("2026-03-01", 4, 1, 20, 2),  # a 3-page document and a photo
        summary("2026-03-01", 2, 0, 5, 2),
        summary("2026-03-02", 1, 1, 0, 1),
    ]
    old = {k: v for k, v in ShardSummary.from_xcom(xcoms[2]).to_xcom().items() if k != "objects"}
    assert ShardSummary.from_xcom(old).objects == 0  # an XCom written before `objects` still reads
    summaries = [s for s in map(ShardSummary.from_xcom, xcoms) if s is not None]
    figures = run_figures(summaries, ["2026-03-01", "2026-03-02", "2026-03-03"])
    assert figures["by_dt"] == {
        "2026-03-01": {"images": 6, "objects": 4, "ok": 5, "errors": 1, "words": 25},
        "2026-03-02": {"images": 1, "objects": 1, "ok": 0, "errors": 1, "words": 0},
        "2026-03-03": {"images": 0, "objects": 0, "ok": 0, "errors": 0, "words": 0},  # a date without images
    }
    totals = tuple(figures[k] for k in ("images", "objects", "ok", "errors", "words"))
    assert totals == (7, 5, 5, 2, 25)
    assert figures["models"] == {"det_sha256": "d" * 64}


@pytest.mark.parametrize("options", [{"verify_word": False}, {"verify_words": "no"}, ["verify_words"]])
def test_engine_options_param_is_checked_against_the_engine_config(options) -> None:
    """What the manifest task does with the Param: a bad key or value fails the run, without a retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from wildocr.airflow.params import engine_options

    assert engine_options({"verify_words": False}) == {"verify_words": False}
    assert engine_options(None) == {} and engine_options("None") == {}
    assert engine_options('{"det_limit_side": 960}') == {"det_limit_side": 960}  # a string template
    with pytest.raises(AirflowFailException, match="engine_options"):
        engine_options(options)


def test_model_dir_param_then_variable_then_stock(tmp_path: Path) -> None:
    """One rule (settings.model_dir) like the output root's; the manifest task then checks the folder and a
    broken one fails the run without a retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from tests.helpers import model_folder
    from wildocr.airflow import params, settings

    assert settings.VAR_MODEL_DIR == "wildocr_model_dir"
    assert settings.model_dir("/a", "/b") == "/a"
    assert settings.model_dir("None", "/b") == settings.model_dir(None, " /b ") == "/b"
    assert settings.model_dir(None, None) is None and settings.model_dir("", "None") is None  # stock
    folder = model_folder(tmp_path / "ft")
    assert params.model_dir(str(folder)) == str(folder)
    assert params.model_dir("None") is None
    with pytest.raises(AirflowFailException, match=r"model folder .*: no manifest\.json in it"):
        params.model_dir(str(tmp_path))
