"""The deployment as it runs: `scripts/stack.sh up` (Postgres, Redis, an S3 server, api-server, scheduler,
dag-processor, triggerer, a Celery worker on `default` and one on `gpu`), driven with the Airflow CLI the way
docs/deployment.md says, checked on the metadata DB's task instances and on the Parquet tables.

`make test-stack` runs this (plain `make test` does not). Without Postgres or Redis on the machine the module
is skipped with the reason; under CI (CI=true) that is a failure instead. The tests share one stack and run
in file order (the kill and fault tests compare against the first test's clean run). Wall times, the
recovery time of every fault (docs/reliability.md) and the peak RSS of every task process are printed at the
end and written to out/stack_measurements.json. Every task reaches S3 through tests/faultproxy.py (the
Airflow connection's endpoint), so that a test can make the object store answer errors; the tests' own reads
go to the S3 server directly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from tests.faultproxy import FaultProxy
from tests.helpers import WORD_RECALL, _recall
from wildocr.samples import generate

ROOT = Path(__file__).resolve().parents[1]
STACK_SH = ROOT / "scripts" / "stack.sh"
PHOTOS = "wildocr-photos"
LAKE = "s3://wildocr-lake/ocr"
RUN_TIMEOUT = 600  # seconds for one DAG run to finish; a stuck run fails the test instead of hanging CI
# Short recovery settings so a killed worker is noticed in well under a minute (compose uses 120 s).
HEARTBEAT_TIMEOUT = 45

DAY = "2026-03-01"  # the clean run, and the day whose run gets its GPU worker killed
BACKFILL_DAYS = ("2026-03-02", "2026-03-03", "2026-03-04")
CORRUPT_DAY = "2026-03-05"
# Columns that legitimately differ between two runs over the same photos.
VOLATILE = {"run_id", "processed_at", "det_seconds", "rec_seconds"}


# ----------------------------------------------------------------------------------------- the stack


@dataclass
class TaskProcesses:
    """Watches the two workers' process trees: which worker ran which task instance, and its peak RSS.

    Airflow titles the task process `airflow worker -- <ti id>` and its supervisor
    `airflow supervisor: <ti id>`; the ti id is task_instance.id (one per try).
    """

    run_dir: Path
    worker_of: dict[str, str] = field(default_factory=dict)  # ti id -> "worker" | "worker-gpu"
    peak_rss_kb: dict[str, int] = field(default_factory=dict)  # ti id -> VmHWM of the task process
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            for worker in ("worker", "worker-gpu"):
                try:
                    root = psutil.Process(int((self.run_dir / f"{worker}.pid").read_text()))
                    children = root.children(recursive=True)
                except (OSError, ValueError, psutil.Error):
                    continue
                for proc in children:
                    try:
                        title = " ".join(proc.cmdline())
                        if title.startswith("airflow worker -- "):
                            ti_id = title.split()[-1]
                            self.worker_of[ti_id] = worker
                            hwm = _vm_hwm_kb(proc.pid)
                            self.peak_rss_kb[ti_id] = max(self.peak_rss_kb.get(ti_id, 0), hwm)
                        elif title.startswith("airflow supervisor: "):
                            self.worker_of[title.split()[-1]] = worker
                    except (psutil.Error, OSError):
                        continue


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    procs: TaskProcesses
    proxy: FaultProxy  # between every task and the S3 server
    measurements: dict[str, Any] = field(default_factory=dict)  # printed and saved at the end
    clean_rows: dict[str, list[tuple]] | None = None  # the first test's partition, for the kill test

    def sh(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(
            ["bash", str(STACK_SH), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert out.returncode == 0, f"stack.sh {args}: {out.stdout[-2000:]}{out.stderr[-4000:]}"
        return out.stdout

    def airflow(self, *args: str) -> str:
        out = subprocess.run(
            ["airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=ROOT,
        )
        assert out.returncode == 0, f"airflow {args}: {out.stdout[-2000:]}{out.stderr[-4000:]}"
        return out.stdout

    def sql(self, query: str, *params: Any) -> list[tuple]:
        with (
            psycopg2.connect(
                host="127.0.0.1",
                port=int(self.env["STACK_PG_PORT"]),
                user=self.env["POSTGRES_USER"],
                password=self.env["POSTGRES_PASSWORD"],
                dbname=self.env["POSTGRES_DB"],
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(query, params)
            return cur.fetchall()

    @property
    def storage_options(self) -> dict[str, Any]:
        return {
            "key": self.env["MINIO_ROOT_USER"],
            "secret": self.env["MINIO_ROOT_PASSWORD"],
            "endpoint_url": self.env["STACK_S3_ENDPOINT"],
            "client_kwargs": {"region_name": "us-east-1"},
        }

    def seed(self, day: str, count: int, seed: int) -> list[dict]:
        return generate(
            f"s3://{PHOTOS}/incoming/{day}/", count=count, seed=seed, storage_options=self.storage_options
        )

    def trigger(self, day: str, **conf: Any) -> str:
        """`airflow dags trigger wildocr_nightly -c {"dt": ...}` as documented; returns the run id."""
        out = self.airflow(
            "dags", "trigger", "wildocr_nightly", "-c", json.dumps({"dt": day, **conf}), "-o", "json"
        )
        line = next(line for line in out.splitlines() if line.startswith("[{"))  # stdout also has warnings
        return json.loads(line)[0]["dag_run_id"]

    def run_state(self, run_id: str) -> str | None:
        rows = self.sql("SELECT state FROM dag_run WHERE dag_id = 'wildocr_nightly' AND run_id = %s", run_id)
        return rows[0][0] if rows else None

    def wait_for_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> float:
        """Wait until the run succeeds (fail on `failed`); returns the seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            state = self.run_state(run_id)
            if state == "success":
                return time.monotonic() - start
            assert state != "failed", f"{run_id} failed: {self.task_instances(run_id)}"
            time.sleep(2)
        raise AssertionError(f"{run_id} not done after {timeout} s: {self.task_instances(run_id)}")

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        cols = ("id", "task_id", "map_index", "state", "try_number", "queue", "pool", "hostname")
        rows = self.sql(
            f"SELECT {', '.join(cols)} FROM task_instance WHERE dag_id = 'wildocr_nightly' AND run_id = %s "
            "ORDER BY task_id, map_index",
            run_id,
        )
        return [{**dict(zip(cols, row, strict=True)), "id": str(row[0])} for row in rows]

    def rows(self, table: str, day: str) -> list[dict[str, Any]]:
        """A partition read back with DuckDB through fsspec (s3fs): the route that needs no extension."""
        import s3fs

        con = duckdb.connect()
        con.register_filesystem(s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options))
        rel = con.sql(f"SELECT * FROM read_parquet('{LAKE}/{table}/dt={day}/*.parquet')")
        return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def _env_from(env_file: Path, base: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", f"source '{env_file}' && env -0"], env=base, capture_output=True, check=True
    ).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WILDOCR_HOME"))}
    base["WILDOCR_STACK_DIR"] = str(tmp_path_factory.mktemp("stack"))
    base["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] = str(HEARTBEAT_TIMEOUT)
    proxy = FaultProxy("http://127.0.0.1:1").start()  # its upstream is the S3 server, once it is up
    base["WILDOCR_STACK_TASK_S3_ENDPOINT"] = proxy.endpoint
    check = subprocess.run(
        ["bash", str(STACK_SH), "check"], env=base, capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        reason = f"the stack cannot start here: {check.stderr.strip() or check.stdout.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: .ci/run must install it)", pytrace=False)
        pytest.skip(reason)
    stack_dir = Path(base["WILDOCR_STACK_DIR"])
    started = time.monotonic()
    up = subprocess.run(["bash", str(STACK_SH), "up"], env=base, capture_output=True, text=True, check=False)
    try:
        assert up.returncode == 0, f"stack.sh up failed:\n{up.stdout}\n{up.stderr}\n{_logs_tail(stack_dir)}"
        procs = TaskProcesses(run_dir=stack_dir / "run")
        procs.start()
        s = Stack(dir=stack_dir, env=_env_from(stack_dir / "env.sh", base), procs=procs, proxy=proxy)
        proxy.set_upstream(s.env["STACK_S3_ENDPOINT"])
        s.measurements["bring_up_s"] = round(time.monotonic() - started, 1)
        _wait_for_dags(s)
        yield s
        procs.stop()
        _report(s)
    finally:
        proxy.stop()
        subprocess.run(
            ["bash", str(STACK_SH), "down"], env=base, capture_output=True, timeout=600, check=False
        )
        subprocess.run(
            ["bash", str(STACK_SH), "clean"], env=base, capture_output=True, timeout=120, check=False
        )


def _logs_tail(stack_dir: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        for log in sorted((stack_dir / "logs").glob("*.log"))
    )


def _wait_for_dags(stack: Stack, timeout: float = 180) -> None:
    """The dag-processor must have serialized both DAGs before the CLI can trigger or backfill them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = {r[0] for r in stack.sql("SELECT dag_id FROM serialized_dag")}
        if {"wildocr_nightly", "wildocr_backfill"} <= got:
            return
        time.sleep(2)
    raise AssertionError(f"DAGs not serialized after {timeout} s\n{_logs_tail(stack.dir)}")


def _report(stack: Stack) -> None:
    """Peak RSS per task id over every task process seen, plus the wall times, printed and saved."""
    peaks: dict[str, list[int]] = {}
    for ti_id, kb in stack.procs.peak_rss_kb.items():
        rows = stack.sql(
            "SELECT task_id FROM task_instance WHERE id::text = %s "
            "UNION SELECT task_id FROM task_instance_history WHERE task_instance_id::text = %s",
            ti_id,
            ti_id,
        )
        if rows and kb:
            peaks.setdefault(rows[0][0], []).append(kb)
    stack.measurements["peak_rss_mb_per_task"] = {
        task: {
            "max": round(max(kbs) / 1024),
            "median": round(sorted(kbs)[len(kbs) // 2] / 1024),
            "n": len(kbs),
        }
        for task, kbs in sorted(peaks.items())
    }
    text = json.dumps(stack.measurements, indent=2)
    print("\nstack measurements:\n" + text)
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "out" / "stack_measurements.json").write_text(text + "\n")


# ----------------------------------------------------------------------------------------- checks


def _deterministic(rows: list[dict[str, Any]]) -> list[tuple]:
    """Rows without the columns that differ between runs, in a stable order (to compare two runs)."""
    return sorted(tuple((k, v) for k, v in sorted(r.items()) if k not in VOLATILE) for r in rows)


def _assert_matches_truth(stack: Stack, day: str, truth: list[dict]) -> None:
    images = stack.rows("images", day)
    words = stack.rows("words", day)
    names = sorted(Path(r["image_uri"]).name for r in images)
    assert names == sorted(t["image"] for t in truth), "one images row per photo, none twice"
    assert {r["status"] for r in images} == {"ok"}, [r["error"] for r in images if r["status"] != "ok"]
    keys = [(r["image_uri"], r["word_index"]) for r in words]
    assert len(keys) == len(set(keys)), "duplicate word rows"
    n_words = Counter(r["image_uri"] for r in words)
    assert all(r["n_words"] == n_words[r["image_uri"]] for r in images)
    recall = _recall(truth, words)
    print(f"dt={day}: {len(images)} images, {len(words)} words, word recall {recall:.3f}")
    assert recall >= WORD_RECALL, f"word recall {recall:.2f}"


def _ran_on(stack: Stack, run_id: str) -> dict[tuple[str, int], tuple[str, str]]:
    """(task, map index) -> (Celery queue, the worker whose process tree ran its last try)."""
    return {
        (ti["task_id"], ti["map_index"]): (ti["queue"], stack.procs.worker_of.get(ti["id"], "?"))
        for ti in stack.task_instances(run_id)
    }


GPU_STEPS = {"ocr.detect", "ocr.recognize"}


def test_nightly_run_runs_gpu_steps_on_the_gpu_worker_and_matches_truth(stack: Stack) -> None:
    # docs/deployment.md: unpause, which at once starts the scheduled run for yesterday (an empty day here).
    stack.airflow("dags", "unpause", "wildocr_nightly")
    deadline = time.monotonic() + 120
    while not (scheduled := stack.sql("SELECT run_id FROM dag_run WHERE run_type = 'scheduled'")):
        assert time.monotonic() < deadline, "unpausing created no scheduled run"
        time.sleep(2)
    truth = stack.seed(DAY, count=12, seed=101)
    stack.measurements["day_photos"] = 12
    run_id = stack.trigger(DAY, shard_size=6)
    stack.measurements["one_day_s"] = round(stack.wait_for_run(run_id), 1)

    placed = _ran_on(stack, run_id)
    assert len(placed) == 2 + 4 * 2, placed  # manifest, finalize and 2 shards x 4 steps
    for (task, _), (queue, worker) in placed.items():
        want = ("gpu", "worker-gpu") if task in GPU_STEPS else ("default", "worker")
        assert (queue, worker) == want, (task, queue, worker)
    assert {ti["pool"] for ti in stack.task_instances(run_id) if ti["task_id"] in GPU_STEPS} == {"gpu"}
    _assert_matches_truth(stack, DAY, truth)
    stack.clean_rows = {t: _deterministic(stack.rows(t, DAY)) for t in ("images", "words")}
    # Yesterday's scheduled run has no photos folder: it fails by design (a missing prefix never empties a
    # partition, docs/operations.md), so its outcome is not waited for; it wrote no partition.
    assert not stack.sql(
        "SELECT 1 FROM task_instance WHERE run_id = %s AND state = 'success' AND task_id LIKE 'ocr.%%'",
        scheduled[0][0],
    )


def test_backfill_of_three_dates_then_clearing_one_date(stack: Stack) -> None:
    truths = {day: stack.seed(day, count=4, seed=200 + i) for i, day in enumerate(BACKFILL_DAYS)}
    started = time.monotonic()
    stack.airflow(
        "backfill", "create", "--dag-id", "wildocr_nightly",
        "--from-date", BACKFILL_DAYS[0], "--to-date", f"{BACKFILL_DAYS[-1]}T23:59:59",
    )  # fmt: skip
    runs: dict[str, str] = {}  # ds -> run id (the run id carries the run_after date, one day later)
    deadline = time.monotonic() + 60
    while len(runs) < 3:
        assert time.monotonic() < deadline, f"backfill created {runs}"
        rows = stack.sql("SELECT logical_date, run_id FROM dag_run WHERE run_type = 'backfill'")
        runs = {logical_date.date().isoformat(): run_id for logical_date, run_id in rows}
        time.sleep(1)
    assert sorted(runs) == list(BACKFILL_DAYS), runs
    for run_id in runs.values():
        stack.wait_for_run(run_id)
    stack.measurements["backfill_three_days_s"] = round(time.monotonic() - started, 1)
    for day, truth in truths.items():
        _assert_matches_truth(stack, day, truth)

    # Clear one date: the scheduler runs it again and the partition holds the same rows.
    day = BACKFILL_DAYS[1]
    run_id = runs[day]
    before = {t: _deterministic(stack.rows(t, day)) for t in ("images", "words")}
    stack.airflow("tasks", "clear", "wildocr_nightly", "-s", day, "-e", f"{day}T23:59:59", "-y")
    deadline = time.monotonic() + 60
    while stack.run_state(run_id) == "success":  # until the scheduler has picked the cleared run up
        assert time.monotonic() < deadline, "clearing did not re-queue the run"
        time.sleep(1)
    stack.wait_for_run(run_id)
    assert all(ti["try_number"] >= 2 for ti in stack.task_instances(run_id)), "not every task ran again"
    assert {t: _deterministic(stack.rows(t, day)) for t in ("images", "words")} == before


def test_gpu_worker_killed_during_detection_recovers_to_the_clean_rows(stack: Stack) -> None:
    clean = stack.clean_rows
    if clean is None:
        pytest.skip("needs the clean run of test_nightly_run_... (run the whole module)")
    run_id = stack.trigger(DAY, shard_size=6)
    deadline = time.monotonic() + RUN_TIMEOUT
    victim = None
    while victim is None:  # a detect task process alive in the GPU worker's tree
        assert time.monotonic() < deadline, stack.task_instances(run_id)
        for ti in stack.task_instances(run_id):
            if (
                ti["task_id"] == "ocr.detect"
                and ti["state"] == "running"
                and stack.procs.peak_rss_kb.get(ti["id"], 0) > 0
                and stack.procs.worker_of.get(ti["id"]) == "worker-gpu"
            ):
                victim = ti
        time.sleep(0.2)
    # Kill at once: a 6-photo detect task lives only a few seconds on a quiet machine, and waiting "into
    # the detection" (2 s) once let it finish first, so that nothing was killed (CI, 2026-12-01).
    assert stack.run_state(run_id) == "running"
    stack.sh("kill", "worker-gpu")  # SIGKILL of the worker and all its processes, as a crashed host
    killed_at = time.monotonic()
    stack.sh("start", "worker-gpu")  # compose: restart: always
    stack.wait_for_run(run_id, timeout=RUN_TIMEOUT)
    stack.measurements["recovery_after_kill_s"] = round(time.monotonic() - killed_at, 1)

    retried = {(ti["task_id"], ti["map_index"]): ti["try_number"] for ti in stack.task_instances(run_id)}
    assert retried[("ocr.detect", victim["map_index"])] >= 2, retried
    assert {t: _deterministic(stack.rows(t, DAY)) for t in ("images", "words")} == clean


# ----------------------------------------------------------------------------------------- faults
# Each fault hits a rerun of DAY (12 photos, 2 shards) while it is in flight; the run must finish (or fail
# with a clear message and finish when run again) with the clean run's rows. The recovery times go into
# out/stack_measurements.json under "faults" and into docs/reliability.md.

AIRFLOW_COMPONENTS = ("apiserver", "scheduler", "dag-processor", "triggerer", "worker", "worker-gpu")
DOWN_S = 5  # how long a killed scheduler stays down: a supervisor's restart delay


def _clean(stack: Stack) -> dict[str, list[tuple]]:
    if stack.clean_rows is None:
        pytest.skip("needs the clean run of test_nightly_run_... (run the whole module)")
    return stack.clean_rows


def _tables(stack: Stack, day: str = DAY) -> dict[str, list[tuple]]:
    return {t: _deterministic(stack.rows(t, day)) for t in ("images", "words")}


def _wait_for_task(stack: Stack, run_id: str, task_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    """The first instance of `task_id` seen in one of `states` (polled every 0.2 s)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        for ti in stack.task_instances(run_id):
            if ti["task_id"] == task_id and ti["state"] in states:
                return ti
        assert stack.run_state(run_id) != "failed", stack.task_instances(run_id)
        time.sleep(0.2)
    raise AssertionError(f"{task_id} never {states}: {stack.task_instances(run_id)}")


def _wait_supervised(stack: Stack, run_id: str, restarted: list[str]) -> None:
    """wait_for_run, restarting any Airflow component that died meanwhile (compose's `restart: always`)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        assert time.monotonic() < deadline, f"{run_id} not done: {stack.task_instances(run_id)}"
        dead = [name for name in AIRFLOW_COMPONENTS if not _alive(stack, name)]
        if dead:
            restarted += dead
            stack.sh("heal")  # what an operator (or a supervisor) does: start what is down
        try:
            state = stack.run_state(run_id)
        except psycopg2.OperationalError:  # Postgres still starting
            state = None
        if state == "success":
            return
        assert state != "failed", f"{run_id} failed: {stack.task_instances(run_id)}"
        time.sleep(1)


def _alive(stack: Stack, name: str) -> bool:
    try:
        os.kill(int((stack.dir / "run" / f"{name}.pid").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _record(stack: Stack, fault: str, **seconds: float) -> None:
    stack.measurements.setdefault("faults", {})[fault] = {k: round(v, 1) for k, v in seconds.items()}


def _service_restart_mid_run(stack: Stack, fault: str, command: tuple[str, ...]) -> None:
    """Rerun DAY, run `stack.sh COMMAND` while a detect task runs, and check the run ends as the clean one."""
    clean = _clean(stack)
    run_id = stack.trigger(DAY, shard_size=6)
    _wait_for_task(stack, run_id, "ocr.detect", ("running",))
    fault_at = time.monotonic()
    stack.sh(*command)
    restored_at = time.monotonic()
    restarted: list[str] = []
    _wait_supervised(stack, run_id, restarted)
    done = time.monotonic()
    _record(stack, fault, fault_to_success_s=done - fault_at, restart_to_success_s=done - restored_at)
    if restarted:
        stack.measurements["faults"][fault]["components_restarted"] = restarted
    assert _tables(stack) == clean


def test_scheduler_killed_mid_run_and_restarted_finishes_with_the_clean_rows(stack: Stack) -> None:
    clean = _clean(stack)
    run_id = stack.trigger(DAY, shard_size=6)
    _wait_for_task(stack, run_id, "ocr.detect", ("running",))
    stack.sh("kill", "scheduler")  # SIGKILL of its whole tree: a crashed host, an OOM kill
    fault_at = time.monotonic()
    time.sleep(DOWN_S)
    stack.sh("start", "scheduler")
    restored_at = time.monotonic()
    stack.wait_for_run(run_id)
    done = time.monotonic()
    _record(
        stack, "scheduler_killed", fault_to_success_s=done - fault_at, restart_to_success_s=done - restored_at
    )
    assert _tables(stack) == clean


def test_redis_restarted_mid_run_finishes_with_the_clean_rows(stack: Stack) -> None:
    _service_restart_mid_run(stack, "redis_restarted", ("restart", "redis"))


def test_postgres_restarted_mid_run_finishes_with_the_clean_rows(stack: Stack) -> None:
    _service_restart_mid_run(stack, "postgres_restarted", ("restart", "postgres"))


S3_OUTAGE_S = 30


def test_object_store_errors_during_publish_retry_to_the_clean_rows(stack: Stack) -> None:
    """The lake answers 503 SlowDown to writes and 500 to reads for 30 s from the first publish on.

    Every read of the partition meanwhile (straight from the S3 server, as a reader would) sees whole part
    files with the clean rows: the old partition or the new, never a half-written file.
    """
    clean = _clean(stack)
    run_id = stack.trigger(DAY, shard_size=6)
    _wait_for_task(stack, run_id, "ocr.recognize", ("success",))
    tables_path = rf"^/wildocr-lake/ocr/(images|words)/dt={DAY}/"
    rules = [
        stack.proxy.fail(method="PUT", path=tables_path, status=503, code="SlowDown", times=None),
        *(
            stack.proxy.fail(method=m, path=tables_path, status=500, code="InternalError", times=None)
            for m in ("GET", "HEAD", "DELETE", "POST")
        ),
    ]
    fault_at = time.monotonic()
    reads = 0
    try:
        while time.monotonic() - fault_at < S3_OUTAGE_S:
            assert _tables(stack) == clean, "a reader saw a partition that is neither the old nor the new"
            reads += 1
            time.sleep(1)
    finally:
        for rule in rules:
            stack.proxy.remove(rule)
    restored_at = time.monotonic()
    injected = [r for r in stack.proxy.requests(path=tables_path) if r.injected]
    assert injected, "no table write happened during the outage: the fault hit nothing"
    stack.wait_for_run(run_id)
    done = time.monotonic()
    _record(
        stack, "s3_errors_30s", fault_to_success_s=done - fault_at, restart_to_success_s=done - restored_at
    )
    stack.measurements["faults"]["s3_errors_30s"]["requests_failed"] = len(injected)
    stack.measurements["faults"]["s3_errors_30s"]["reads_during_outage"] = reads
    stack.measurements["faults"]["s3_errors_30s"]["publish_tries"] = max(
        ti["try_number"] for ti in stack.task_instances(run_id) if ti["task_id"] == "ocr.publish"
    )
    assert _tables(stack) == clean


@pytest.fixture
def small_disk(stack: Stack) -> Iterator[Path]:
    """A tmpfs of its own (1 MiB) for one run's output root; root only (mount), unmounted afterwards."""
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs for the disk-full test needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: .ci/run runs as root)", pytrace=False)
        pytest.skip(reason)
    mount = stack.dir / "small-disk"
    mount.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:  # root without CAP_SYS_ADMIN, e.g. an unprivileged container
        reason = f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true)", pytrace=False)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Write a filler file until the filesystem is full (ENOSPC), as another tenant of the disk would."""
    filler = disk / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == 28, exc
    return filler


def _local_rows(root: Path, table: str, day: str) -> list[dict[str, Any]]:
    files = sorted((root / table / f"dt={day}").glob("*.parquet"))
    if not files:
        return []
    rel = duckdb.connect().sql(f"SELECT * FROM read_parquet({[str(f) for f in files]!r})")
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def test_output_disk_full_fails_clearly_then_finishes_once_space_is_freed(
    stack: Stack, small_disk: Path
) -> None:
    clean = _clean(stack)
    root = small_disk / "ocr"
    filler = _fill(small_disk)
    fault_at = time.monotonic()  # the disk is full before the run starts
    run_id = stack.trigger(DAY, shard_size=6, output_root=f"file://{root}")
    failed = _wait_for_task(stack, run_id, "manifest", ("up_for_retry", "failed"))
    failed_at = time.monotonic()
    logs = sorted(
        (Path(stack.env["AIRFLOW_HOME"]) / "logs").glob(f"dag_id=wildocr_nightly/run_id={run_id}/**/*.log")
    )
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    # The error names the file it could not write, so the operator knows which volume to free.
    named = re.search(rf"No space left on device: '(file://)?{re.escape(str(root))}/", text)
    assert named, f"{failed}: {text[-3000:]}"
    # Nothing a reader could take for a table: no part file, no half-written temporary.
    assert not [p for p in root.rglob("*") if p.is_file() and "/_staging/" not in str(p)], list(
        root.rglob("*")
    )
    # Space freed as an operator would: the filler deleted and the volume grown (1 MiB cannot hold the
    # staged crops of 12 photos); the task's retry, a minute after the failure, then runs the day.
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    freed_at = time.monotonic()
    stack.wait_for_run(run_id)
    done = time.monotonic()
    _record(
        stack,
        "disk_full",
        fault_to_success_s=done - fault_at,
        restart_to_success_s=done - freed_at,
        trigger_to_clear_failure_s=failed_at - fault_at,
    )
    assert {t: _deterministic(_local_rows(root, t, DAY)) for t in ("images", "words")} == clean


def test_corrupt_objects_become_error_rows_and_the_run_succeeds(stack: Stack) -> None:
    truth = stack.seed(CORRUPT_DAY, count=3, seed=300)
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **stack.storage_options)
    prefix = f"{PHOTOS}/incoming/{CORRUPT_DAY}"
    good = fs.cat_file(f"{prefix}/{truth[0]['image']}")
    corrupt = {
        "truncated.jpg": good[: len(good) // 3],
        "noise.png": os.urandom(4096),
        "empty.jpg": b"",
    }
    for name, data in corrupt.items():
        fs.pipe_file(f"{prefix}/{name}", data)
    run_id = stack.trigger(CORRUPT_DAY)
    stack.wait_for_run(run_id)
    images = {Path(r["image_uri"]).name: r for r in stack.rows("images", CORRUPT_DAY)}
    assert set(images) == {t["image"] for t in truth} | set(corrupt)
    for name in corrupt:
        assert images[name]["status"] == "error" and images[name]["error"], images[name]
    assert all(images[t["image"]]["status"] == "ok" for t in truth)
    assert {ti["state"] for ti in stack.task_instances(run_id)} == {"success"}


def test_stack_processes_are_ours_and_alive(stack: Stack) -> None:
    """Every component still runs under the PID the script recorded (nothing crashed during the tests)."""
    for name in (
        "postgres",
        "redis",
        "s3",
        "apiserver",
        "scheduler",
        "dag-processor",
        "triggerer",
        "worker",
        "worker-gpu",
    ):
        pid = int((stack.dir / "run" / f"{name}.pid").read_text())
        os.kill(pid, 0)  # raises ProcessLookupError if it is gone
