"""`wildocr run` and `wildocr shard ...`: the tables written from a shell, without Airflow.

    wildocr run PREFIX --output ROOT --dt YYYY-MM-DD [--shard-size N] [--incremental]
                [--skip-seen-content] [--run-id ID] [--fail-on-error]
    wildocr shard plan PREFIX --manifest URL --shard-size N [--skip-done ROOT] [--skip-seen ROOT] [--dt D]
    wildocr shard process MANIFEST --shard K --output ROOT --dt YYYY-MM-DD [--run-id ID]
    wildocr shard finalize ROOT --dt YYYY-MM-DD   (after every shard: mark duplicates across shards)
    wildocr shard unlock ROOT --dt YYYY-MM-DD     (remove the dt's lease of a run that is surely dead)

Each prints one JSON document on stdout (progress goes to the log on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wildocr.cli import args as cli_args
from wildocr.pipeline import options, outcome
from wildocr.storage import tables

# The pipeline's shard modules (pyarrow, the Parquet writers) are imported by the commands that use them:
# `wildocr ocr` registers these commands too, and never writes a table.

DEFAULT_SHARD_SIZE = 64  # a shard is the unit of progress and of retry: a minute or so of CPU OCR


def _print(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()


def cmd_plan(args: argparse.Namespace) -> int:
    from wildocr.pipeline import run
    from wildocr.storage import manifest

    storage_options = cli_args.storage_options(args)
    shards = run.build_manifest(
        args.prefix,
        args.manifest,
        shard_size=args.shard_size,
        storage_options=storage_options,
        skip_done_root=args.skip_done,
        dt=args.dt,
        skip_seen_root=args.skip_seen,
    )
    info = manifest.read_manifest(args.manifest, storage_options)[1]
    _print({"manifest": args.manifest, "shards": shards, **info.to_json()})
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from wildocr.pipeline import fused

    storage_options = cli_args.storage_options(args)
    summary = fused.process_shard(
        args.manifest,
        args.shard,
        output_root=args.output,
        dt=args.dt,
        run_id=args.run_id,
        engine=cli_args.engine(args),
        storage_options=storage_options,
        chunk_size=args.chunk_size,
        prefetch=args.prefetch,
    )
    _print(summary.to_xcom())
    return 1 if summary.errors and args.fail_on_error else 0


def cmd_run(args: argparse.Namespace) -> int:
    """Plan and process every shard in this process: the whole pipeline for one day, no orchestrator.

    The engine is loaded first, so missing or corrupt model files stop the run before anything is listed,
    leased or read.
    """
    from wildocr.pipeline import fused, run
    from wildocr.storage import manifest

    storage_options = cli_args.storage_options(args)
    engine = cli_args.engine(args)
    plan = run.plan_run(
        {args.dt: args.prefix},
        args.output,
        args.run_id,
        shard_size=args.shard_size,
        skip_done=args.incremental,
        skip_seen_content=args.skip_seen_content,
        storage_options=storage_options,
        model_dir=engine.config.model_dir,
    )
    info = manifest.read_manifest(run.manifest_url(plan.staging[args.dt]), storage_options)[1]
    summaries = fused.process_run(
        plan, engine, storage_options=storage_options, chunk_size=args.chunk_size, prefetch=args.prefetch
    )
    totals = {
        k: sum(getattr(s, k) for s in summaries)
        for k in ("images", "objects", "ok", "errors", "skipped", "words")
    }
    _print(
        {
            "run_id": args.run_id,
            "dt": args.dt,
            "output": args.output,
            "manifest": info.to_json(),
            "shards": len(summaries),
            **totals,
        }
    )
    return 1 if totals["errors"] and args.fail_on_error else 0


def cmd_finalize(args: argparse.Namespace) -> int:
    """Mark duplicates across the shards of a partition (what `run` and the DAGs do after every shard)."""
    from wildocr.pipeline import run

    storage_options = cli_args.storage_options(args)
    rewritten = run.finalize_partition(args.output, args.dt, storage_options=storage_options)
    _print({"output": args.output, "dt": args.dt, "images_files_rewritten": rewritten})
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    """Remove a dt's lease by hand: only once the run holding it is surely dead (see lease.py)."""
    from wildocr.storage import lease

    storage_options = cli_args.storage_options(args)
    removed = lease.force_release(args.output, args.dt, storage_options)
    _print({"lease": lease.lease_url(args.output, args.dt), "removed": removed})
    return 0


def _add_reading(p: argparse.ArgumentParser) -> None:
    """Arguments of the commands that read images: engine flags and how much is read at once."""
    options.add_engine_arguments(p)
    p.add_argument(
        "--chunk-size",
        type=cli_args.positive,
        default=outcome.DEFAULT_CHUNK_SIZE,
        help="images per engine call",
    )
    p.add_argument(
        "--prefetch", type=cli_args.positive, default=outcome.DEFAULT_PREFETCH, help="objects fetched ahead"
    )
    p.add_argument("--fail-on-error", action="store_true", help="exit 1 if any image got an error row")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `run` and `shard` (plan / process / finalize / unlock) to the main `wildocr` parser."""
    default_run_id = f"cli__{tables.utc_now().strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"

    p_run = subparsers.add_parser(
        "run", help="OCR every image under a prefix into ROOT/{images,words}/dt=..."
    )
    p_run.add_argument("prefix")
    p_run.add_argument("--output", required=True, help="output root of the tables")
    p_run.add_argument("--dt", type=cli_args.dt, required=True, help="partition to (re)write, YYYY-MM-DD")
    p_run.add_argument("--shard-size", type=cli_args.positive, default=DEFAULT_SHARD_SIZE)
    p_run.add_argument(
        "--incremental", action="store_true", help="skip images already ok in other partitions"
    )
    p_run.add_argument(
        "--skip-seen-content",
        action="store_true",
        help="skip OCR of objects whose bytes (SHA-256) were read ok on an earlier date (rows: skipped)",
    )
    p_run.add_argument("--run-id", default=default_run_id)
    _add_reading(p_run)
    options.add_storage_arguments(p_run)
    p_run.set_defaults(func=cmd_run)

    p_shard = subparsers.add_parser("shard", help="plan a run's shards, process one, finalize, unlock")
    actions = p_shard.add_subparsers(dest="shard_command", required=True)

    p_plan = actions.add_parser("plan", help="list a prefix and write the manifest (sorted, sharded)")
    p_plan.add_argument("prefix", help="source prefix, e.g. s3://photos/incoming/2026-11-24/")
    p_plan.add_argument("--manifest", required=True, help="manifest URL to write")
    p_plan.add_argument("--shard-size", type=cli_args.positive, default=DEFAULT_SHARD_SIZE)
    p_plan.add_argument("--skip-done", metavar="ROOT", help="skip images already ok in ROOT's images table")
    p_plan.add_argument(
        "--skip-seen",
        metavar="ROOT",
        help="skip OCR of objects whose bytes (SHA-256) were read ok in ROOT on a date before --dt",
    )
    p_plan.add_argument(
        "--dt",
        type=cli_args.dt,
        help="the partition the run writes (required with --skip-done / --skip-seen)",
    )
    options.add_storage_arguments(p_plan)
    p_plan.set_defaults(func=cmd_plan)

    p_proc = actions.add_parser("process", help="OCR one shard of a manifest into ROOT's tables")
    p_proc.add_argument("manifest")
    p_proc.add_argument("--shard", type=int, required=True)
    p_proc.add_argument("--output", required=True, help="output root of the tables")
    p_proc.add_argument("--dt", type=cli_args.dt, required=True)
    p_proc.add_argument("--run-id", default=default_run_id)
    _add_reading(p_proc)
    options.add_storage_arguments(p_proc)
    p_proc.set_defaults(func=cmd_process)

    for name, func, text in (
        (
            "finalize",
            cmd_finalize,
            "after every shard of ROOT's dt: mark duplicates (same bytes) across shards",
        ),
        ("unlock", cmd_unlock, "remove the lease of ROOT's dt partition (its run must be dead); prints it"),
    ):
        p_partition = actions.add_parser(name, help=text)
        p_partition.add_argument("output", metavar="ROOT", help="output root of the tables")
        p_partition.add_argument("--dt", type=cli_args.dt, required=True)
        options.add_storage_arguments(p_partition)
        p_partition.set_defaults(func=func)
