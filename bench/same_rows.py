"""The rows every entry point writes for a folder of photos, normalised, to prove a refactor changed none.

    python bench/same_rows.py snapshot PHOTOS OUT [--entry ocr,run,fused,staged]
    python bench/same_rows.py compare OUT_BEFORE OUT_AFTER

`snapshot` runs each entry point the way a user does (`wildocr ocr`, `wildocr run`, and the nightly DAG with
`mode=fused` and `mode=staged` under `dag.test()` on a throw-away SQLite Airflow home) and writes one JSON
lines file per entry point: every `images` row and its `words`, without the columns that differ from run to
run (timings, run ids, timestamps, temp paths). Only public interfaces are used, so the same command runs
against an older checkout (`PYTHONPATH=OLD/src python bench/same_rows.py snapshot ...`) and a newer one.
`compare` prints the first differences and exits 1 if any entry point's rows differ.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ENTRIES = ("ocr", "run", "fused", "staged")
DT = "2026-01-01"
# Columns that differ between two runs of the same code: when and by which run, and how long it took.
VOLATILE = {"run_id", "processed_at", "det_seconds", "rec_seconds", "shard", "etag"}


def _name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _clean(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _rows_from_tables(root: Path) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    def read(table: str) -> list[dict[str, Any]]:
        path = root / table
        if not path.exists():
            return []
        return ds.dataset(str(path), format="parquet", partitioning="hive").to_table().to_pylist()

    words: dict[str, list[dict[str, Any]]] = {}
    for row in read("words"):
        words.setdefault(_name(row["image_uri"]), []).append(
            {k: v for k, v in row.items() if k not in VOLATILE | {"image_uri", "dt"}}
        )
    out = []
    for row in read("images"):
        image = {k: v for k, v in row.items() if k not in VOLATILE | {"image_uri", "dt"}}
        image["image"] = _name(row["image_uri"])
        if image.get("duplicate_of"):
            image["duplicate_of"] = _name(image["duplicate_of"])
        image["words"] = sorted(words.get(image["image"], []), key=lambda w: w["word_index"])
        out.append(_clean(image))
    return sorted(out, key=lambda r: r["image"])


def _wildocr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "wildocr.cli", *args], check=True)


def snapshot_ocr(photos: Path, work: Path) -> list[dict[str, Any]]:
    out = work / "ocr.jsonl"
    _wildocr("ocr", str(photos), "--out", str(out))
    rows = []
    for line in out.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record.pop("uri", None)
        record.pop("overlay", None)
        rows.append(_clean(record))
    return sorted(rows, key=lambda r: r["image"])


def snapshot_run(photos: Path, work: Path) -> list[dict[str, Any]]:
    root = work / "run"
    _wildocr("run", str(photos), "--output", str(root), "--dt", DT, "--run-id", "same-rows")
    return _rows_from_tables(root)


def snapshot_dag(photos: Path, work: Path, mode: str) -> list[dict[str, Any]]:
    """The nightly DAG under dag.test() in a child process with its own Airflow home."""
    home = work / f"airflow-{mode}"
    home.mkdir()
    root = work / mode
    dags = Path(__file__).resolve().parents[1] / "dags"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "WILDOCR_HOME": str(work / f"home-{mode}"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPENLINEAGE__DISABLED": "True",
    }
    script = f"""
import sys
from airflow.utils import db
db.resetdb()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(dags / "wildocr_nightly.py")!r})
assert not bag.import_errors, bag.import_errors
conf = {{"source_prefix": {str(photos) + "/"!r}, "output_root": {str(root)!r}, "dt": {DT!r}}}
conf["mode"] = {mode!r}
dr = bag.get_dag("wildocr_nightly").test(logical_date=None, run_conf=conf)
sys.exit(0 if dr.state == "success" else 1)
"""
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    return _rows_from_tables(root)


def snapshot(photos: Path, out: Path, entries: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        with tempfile.TemporaryDirectory(prefix=f"same-rows-{entry}-") as tmp:
            work = Path(tmp)
            if entry == "ocr":
                rows = snapshot_ocr(photos, work)
            elif entry == "run":
                rows = snapshot_run(photos, work)
            else:
                rows = snapshot_dag(photos, work, entry)
        with open(out / f"{entry}.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        words = sum(len(r.get("words", [])) for r in rows)
        print(f"{entry}: {len(rows)} images, {words} words -> {out / f'{entry}.jsonl'}", flush=True)


def compare(before: Path, after: Path) -> int:
    status = 0
    for entry in ENTRIES:
        a, b = before / f"{entry}.jsonl", after / f"{entry}.jsonl"
        if not (a.exists() and b.exists()):
            print(f"{entry}: not in both snapshots")
            continue
        old, new = a.read_text().splitlines(), b.read_text().splitlines()
        diffs = [(x, y) for x, y in zip(old, new, strict=False) if x != y]
        if len(old) != len(new) or diffs:
            status = 1
            print(f"{entry}: DIFFERENT ({len(old)} vs {len(new)} images, {len(diffs)} rows differ)")
            for x, y in diffs[:3]:
                print("  before:", x[:400], "\n  after: ", y[:400])
        else:
            print(f"{entry}: same rows ({len(old)} images)")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_snap = sub.add_parser("snapshot")
    p_snap.add_argument("photos", type=Path)
    p_snap.add_argument("out", type=Path)
    p_snap.add_argument("--entry", default=",".join(ENTRIES))
    p_cmp = sub.add_parser("compare")
    p_cmp.add_argument("before", type=Path)
    p_cmp.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        snapshot(args.photos.resolve(), args.out.resolve(), args.entry.split(","))
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
