"""`wildocr shard ...` and `wildocr run ...`: the storage layer from a shell, without Airflow.

    wildocr shard plan PREFIX --manifest URL --shard-size N [--skip-done ROOT] [--skip-seen ROOT] [--dt D]
    wildocr shard process MANIFEST --shard K --output ROOT --dt YYYY-MM-DD [--run-id ID]
    wildocr shard finalize ROOT --dt YYYY-MM-DD   (after every shard: mark duplicates across shards)
    wildocr run PREFIX --output ROOT --dt YYYY-MM-DD [--shard-size N] [--incremental]
                [--skip-seen-content] [--run-id ID]
    wildocr shard unlock ROOT --dt YYYY-MM-DD     (remove the dt's lease of a run that is surely dead)

`register(subparsers)` adds these to the main `wildocr` parser; `python -m wildocr.pipeline.cli` runs them
alone. Each prints one JSON document on stdout (progress goes to the log on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from wildocr.pipeline import shard
from wildocr.storage import lease, manifest, objectstore, tables

log = logging.getLogger(__name__)


def _storage_options(text: str | None) -> dict[str, Any] | None:
    """JSON inline, or `@path` to a JSON file (keeps secrets out of the process list)."""
    if not text:
        return None
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as fh:
            text = fh.read()
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--storage-options must be a JSON object")
    return value


def _dt(text: str) -> str:
    try:
        return tables.validate_dt(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage-options", help="fsspec options as JSON, or @file.json (s3: key, secret, endpoint_url)"
    )


def _add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="ONNX Runtime device")
    p.add_argument(
        "--chunk-size", type=_positive, default=shard.DEFAULT_CHUNK_SIZE, help="images per engine call"
    )
    p.add_argument("--prefetch", type=_positive, default=shard.DEFAULT_PREFETCH, help="objects fetched ahead")


def _engine(args: argparse.Namespace):
    from wildocr.engine import EngineConfig, OCREngine  # loads ONNX Runtime: only for commands that read

    return OCREngine(EngineConfig(device=args.device))


def _print(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()


def cmd_plan(args: argparse.Namespace) -> int:
    options = _storage_options(args.storage_options)
    shards = shard.build_manifest(
        args.prefix,
        args.manifest,
        shard_size=args.shard_size,
        storage_options=options,
        skip_done_root=args.skip_done,
        dt=args.dt,
        skip_seen_root=args.skip_seen,
    )
    info = manifest.read_manifest(args.manifest, options)[1]
    _print({"manifest": args.manifest, "shards": shards, **info.to_json()})
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    options = _storage_options(args.storage_options)
    summary = shard.process_shard(
        args.manifest,
        args.shard,
        output_root=args.output,
        dt=args.dt,
        run_id=args.run_id,
        engine=_engine(args),
        storage_options=options,
        chunk_size=args.chunk_size,
        prefetch=args.prefetch,
    )
    _print(summary)
    return 0 if summary["errors"] == 0 or not args.fail_on_error else 1


def cmd_run(args: argparse.Namespace) -> int:
    """Plan and process every shard in this process: the whole pipeline for one day, no orchestrator.

    The engine is loaded first, so missing or corrupt model files stop the run before anything is listed,
    leased or read. The dt's lease is held from the manifest to the end and released even when a shard
    fails (this process writes nothing more); only a killed process leaves it, for a rerun with the same
    --run-id to take over.
    """
    options = _storage_options(args.storage_options)
    engine = _engine(args)
    staging = shard.staging_root(args.output, args.dt, args.run_id)
    manifest_url = shard.manifest_url(staging)
    summaries = []
    try:
        shards = shard.build_manifest(
            args.prefix,
            manifest_url,
            shard_size=args.shard_size,
            storage_options=options,
            skip_done_root=args.output if args.incremental else None,
            dt=args.dt,
            skip_seen_root=args.output if args.skip_seen_content else None,
        )
        for number in shards:
            summaries.append(
                shard.process_shard(
                    manifest_url,
                    number,
                    output_root=args.output,
                    dt=args.dt,
                    run_id=args.run_id,
                    engine=engine,
                    storage_options=options,
                    chunk_size=args.chunk_size,
                    prefetch=args.prefetch,
                )
            )
        if not shards:  # the partition mirrors the listing: files of an earlier run of this dt go
            shard.remove_stale_parts(args.output, args.dt, 0, options)
        shard.finalize_partition(args.output, args.dt, staging_root=staging, storage_options=options)
        info = manifest.read_manifest(manifest_url, options)[1]
    finally:  # only this run's staging and lease: another run's lease is never released here
        if args.keep_staging:
            owner = objectstore.canonical(manifest_url, options)
            lease.release(args.output, args.dt, owner, options)
        else:
            shard.remove_staging(staging, options)
    totals = {k: sum(s[k] for s in summaries) for k in ("images", "ok", "errors", "skipped", "words")}
    _print(
        {
            "run_id": args.run_id,
            "dt": args.dt,
            "output": args.output,
            "manifest": info.to_json(),
            "shards": len(shards),
            **totals,
        }
    )
    return 0 if totals["errors"] == 0 or not args.fail_on_error else 1


def cmd_finalize(args: argparse.Namespace) -> int:
    """Mark duplicates across the shards of a partition (what `run` and the DAGs do after every shard)."""
    options = _storage_options(args.storage_options)
    rewritten = shard.finalize_partition(args.output, args.dt, storage_options=options)
    _print({"output": args.output, "dt": args.dt, "images_files_rewritten": rewritten})
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    """Remove a dt's lease by hand: only once the run holding it is surely dead (see lease.py)."""
    options = _storage_options(args.storage_options)
    removed = lease.force_release(args.output, args.dt, options)
    _print({"lease": lease.lease_url(args.output, args.dt), "removed": removed})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `shard` (plan / process) and `run` to the main `wildocr` parser."""
    default_run_id = f"cli__{tables.utc_now().strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"

    p_shard = subparsers.add_parser("shard", help="plan a run's shards, or process one shard")
    actions = p_shard.add_subparsers(dest="shard_command", required=True)

    p_plan = actions.add_parser("plan", help="list a prefix and write the manifest (sorted, sharded)")
    p_plan.add_argument("prefix", help="source prefix, e.g. s3://photos/incoming/2026-11-24/")
    p_plan.add_argument("--manifest", required=True, help="manifest URL to write")
    p_plan.add_argument("--shard-size", type=_positive, default=64)
    p_plan.add_argument("--skip-done", metavar="ROOT", help="skip images already ok in ROOT's images table")
    p_plan.add_argument(
        "--skip-seen",
        metavar="ROOT",
        help="skip OCR of objects whose bytes (SHA-256) were read ok in ROOT on a date before --dt",
    )
    p_plan.add_argument(
        "--dt", type=_dt, help="the partition the run writes (required with --skip-done / --skip-seen)"
    )
    _add_common(p_plan)
    p_plan.set_defaults(func=cmd_plan)

    p_proc = actions.add_parser("process", help="OCR one shard of a manifest into ROOT's tables")
    p_proc.add_argument("manifest")
    p_proc.add_argument("--shard", type=int, required=True)
    p_proc.add_argument("--output", required=True, help="output root of the tables")
    p_proc.add_argument("--dt", type=_dt, required=True)
    p_proc.add_argument("--run-id", default=default_run_id)
    p_proc.add_argument("--fail-on-error", action="store_true", help="exit 1 if any image got an error row")
    _add_common(p_proc)
    _add_engine(p_proc)
    p_proc.set_defaults(func=cmd_process)

    p_final = actions.add_parser(
        "finalize", help="after every shard of ROOT's dt: mark duplicates (same bytes) across shards"
    )
    p_final.add_argument("output", metavar="ROOT", help="output root of the tables")
    p_final.add_argument("--dt", type=_dt, required=True)
    _add_common(p_final)
    p_final.set_defaults(func=cmd_finalize)

    p_unlock = actions.add_parser(
        "unlock", help="remove the lease of ROOT's dt partition (its run must be dead); prints what it said"
    )
    p_unlock.add_argument("output", metavar="ROOT", help="output root of the tables")
    p_unlock.add_argument("--dt", type=_dt, required=True)
    _add_common(p_unlock)
    p_unlock.set_defaults(func=cmd_unlock)

    p_run = subparsers.add_parser(
        "run", help="OCR every image under a prefix into ROOT/{images,words}/dt=..."
    )
    p_run.add_argument("prefix")
    p_run.add_argument("--output", required=True, help="output root of the tables")
    p_run.add_argument("--dt", type=_dt, required=True, help="partition to (re)write, YYYY-MM-DD")
    p_run.add_argument("--shard-size", type=_positive, default=64)
    p_run.add_argument(
        "--incremental", action="store_true", help="skip images already ok in other partitions"
    )
    p_run.add_argument(
        "--skip-seen-content",
        action="store_true",
        help="skip OCR of objects whose bytes (SHA-256) were read ok on an earlier date (rows: skipped)",
    )
    p_run.add_argument("--run-id", default=default_run_id)
    p_run.add_argument("--keep-staging", action="store_true", help="keep ROOT/_staging/<dt>/<run>/manifest")
    p_run.add_argument("--fail-on-error", action="store_true", help="exit 1 if any image got an error row")
    _add_common(p_run)
    _add_engine(p_run)
    p_run.set_defaults(func=cmd_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wildocr.pipeline.cli", description=__doc__.split("\n")[0]
    )
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
