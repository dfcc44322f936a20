"""A run: its paths, its plan (manifests, leases, shard sizes), and its end (duplicates, cleanup).

A run writes dt partitions of an output root. For each dt it lists the source prefix into a manifest under
`ROOT/_staging/<dt>/<run-key>/`, taking the partition's lease first (`wildocr.storage.lease`), so that one
run at a time writes a partition; every shard then goes through the fused or staged path; the run ends with
`finish_partition` (duplicates across shards, staging removed, lease released).

`plan_run` is the one planner: `wildocr run`, `wildocr shard plan` and the Airflow manifest task call it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from wildocr.pipeline import duplicates
from wildocr.pipeline.outputs import remove_stale_parts
from wildocr.storage import lease, manifest, objectstore, tables
from wildocr.storage.objectstore import StorageOptions

log = logging.getLogger(__name__)

STAGES = ("detections", "crops", "readings")


# Paths of a run ---------------------------------------------------------------------------------------


def run_key(run_id: str) -> str:
    """A path-safe, collision-free name for a run id (Airflow run ids contain ':' and '+')."""
    if not run_id:
        raise ValueError("run_id must not be empty")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")[:80] or "run"
    return f"{safe}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"


def staging_root(output_root: str, dt: str, run_id: str) -> str:
    """`ROOT/_staging/<dt>/<run-key>`: one run's intermediate files, removed after publish."""
    return objectstore.join(output_root, "_staging", tables.validate_dt(dt), run_key(run_id))


def manifest_url(staging: str) -> str:
    return objectstore.join(staging, "manifest.parquet")


def stage_url(staging: str, stage: str, shard: int) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return objectstore.join(staging, stage, tables.part_name(shard))


# The plan ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One shard's work: everything a shard task needs, so it never re-derives run settings."""

    dt: str
    shard: int
    mode: str
    source_prefix: str  # kept so that tasks pick storage options for the photos' store too
    manifest_url: str
    staging_root: str
    output_root: str
    run_id: str
    model_dir: str | None = None  # the model folder every shard task loads (None: the stock weights)

    @property
    def label(self) -> str:
        return f"{self.dt} #{self.shard:05d}"

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Any) -> ShardSpec:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a shard spec mapping, got {value!r}")
        return cls(**{k: value[k] for k in cls.__slots__ if k in value})


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A planned run: per dt its source prefix, staging root and shard numbers (manifests written)."""

    run_id: str
    mode: str
    output_root: str
    prefixes: dict[str, str]
    staging: dict[str, str]
    shards: dict[str, list[int]]
    shard_size: int
    options: dict[str, Any] = field(default_factory=dict)  # how it was planned (skip_done, ...)
    model_dir: str | None = None  # the model folder the shard tasks load (None: the stock weights)

    @property
    def dts(self) -> list[str]:
        return sorted(self.staging)

    def specs(self) -> list[ShardSpec]:
        return [
            ShardSpec(
                dt=dt,
                shard=n,
                mode=self.mode,
                source_prefix=self.prefixes[dt],
                manifest_url=manifest_url(self.staging[dt]),
                staging_root=self.staging[dt],
                output_root=self.output_root,
                run_id=self.run_id,
                model_dir=self.model_dir,
            )
            for dt, numbers in self.shards.items()
            for n in numbers
        ]

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Any) -> RunPlan:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a run plan mapping, got {value!r}")
        return cls(**{k: value[k] for k in cls.__slots__ if k in value})


def plan_run(
    prefixes: Mapping[str, str],
    output_root: str,
    run_id: str,
    *,
    mode: str = "fused",  # recorded in the shard specs: which path the shard tasks take
    shard_size: int,
    max_shards: int | None = None,
    skip_done: bool = False,
    skip_seen_content: bool = False,
    storage_options: StorageOptions = None,
    model_dir: str | None = None,  # recorded in the shard specs: which weights the shard tasks load
) -> RunPlan:
    """List each dt's prefix into its manifest (taking the dt's lease) and return the run's plan.

    `max_shards` (Airflow's `[core] max_map_length`) bounds the shard count of the whole run: a listing
    that needs more shards is planned again with larger shards instead of failing the run. When planning
    fails, the leases of the dates already planned are given back (a retry plans them all again).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    output_root = output_root.rstrip("/")
    dts = sorted(prefixes)
    if len(set(prefixes.values())) != len(dts):
        raise ValueError(
            f"{len(dts)} dates but one source prefix for several of them; template the prefix with the "
            "date (e.g. '.../{{ ds }}/') or run one dt at a time"
        )
    staging = {dt: staging_root(output_root, dt, run_id) for dt in dts}

    def build(size: int) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        try:
            for dt in dts:
                out[dt] = build_manifest(
                    prefixes[dt],
                    manifest_url(staging[dt]),
                    shard_size=size,
                    storage_options=storage_options,
                    skip_done_root=output_root if skip_done else None,
                    dt=dt,
                    skip_seen_root=output_root if skip_seen_content else None,
                )
                log.info(
                    "dt=%s: %s -> %d shard(s) of <= %d images",
                    dt, objectstore.redact(prefixes[dt]), len(out[dt]), size,
                )  # fmt: skip
        except BaseException:
            for dt in out:
                remove_staging(staging[dt], storage_options)
            raise
        return out

    shards = build(shard_size)
    total = sum(map(len, shards.values()))
    if max_shards is not None and total > max_shards:
        # n_shards <= images/size + dates, and images <= total * old size.
        if max_shards <= len(dts):
            for dt in dts:  # give the leases back: no retry makes this plan fit
                remove_staging(staging[dt], storage_options)
            raise ValueError(f"{len(dts)} dates cannot fit in {max_shards} shards")
        grown = math.ceil(total * shard_size / (max_shards - len(dts)))
        log.warning(
            "%d shards exceed the limit of %d; planning again with shard_size=%d instead of %d",
            total, max_shards, grown, shard_size,
        )  # fmt: skip
        shard_size = grown
        shards = build(shard_size)
    return RunPlan(
        run_id=run_id,
        mode=mode,
        output_root=output_root,
        prefixes={dt: prefixes[dt] for dt in dts},
        staging=staging,
        shards=shards,
        shard_size=shard_size,
        options={"skip_done": skip_done, "skip_seen_content": skip_seen_content},
        model_dir=model_dir,
    )


def build_manifest(
    source_prefix: str,
    url: str,
    *,
    shard_size: int,
    storage_options: StorageOptions = None,
    skip_done_root: str | None = None,
    dt: str | None = None,
    skip_seen_root: str | None = None,
) -> list[int]:
    """List the prefix, write the run's manifest, return its shard numbers (0..n-1).

    Incremental runs (`skip_done_root`) also need `dt`, the partition this run writes: rows already in
    that partition do not count as done, because the run replaces that partition's files.
    Content-incremental runs (`skip_seen_root`, also with `dt`): shard tasks skip OCR for objects whose
    bytes were read `ok` on a date before `dt` (`manifest.seen_content`).

    A manifest laid out as a run's (`manifest_url(staging_root(ROOT, dt, run_id))`) first takes the lease
    of ROOT's dt partition (PartitionBusyError when another run holds it, before anything is written), then
    removes staging left under `ROOT/_staging/<dt>/` by dead runs: holding the lease means no other run of
    that dt is alive. When listing or writing then fails, a lease taken by this call is released again (no
    shard of the run can have written yet), so a failed manifest task does not block other runs.
    """
    layout = lease.run_layout(url)
    taken = False
    if layout is not None:
        root, layout_dt = layout
        if dt is not None and dt != layout_dt:
            raise ValueError(f"dt={dt} but the manifest {url} is laid out for dt={layout_dt}")
        owner = objectstore.canonical(url, storage_options)
        taken = lease.acquire(root, layout_dt, owner, storage_options)
    try:
        if layout is not None:
            _remove_dead_staging(*layout, url, storage_options)
        info = manifest.write_manifest(
            url,
            source_prefix,
            shard_size=shard_size,
            storage_options=storage_options,
            skip_done_root=skip_done_root,
            dt=dt,
            skip_seen_root=skip_seen_root,
        )
    except BaseException:
        if taken and layout is not None:
            lease.release(*layout, owner, storage_options)
        raise
    return list(range(info.n_shards))


def _remove_dead_staging(root: str, dt: str, url: str, storage_options: StorageOptions) -> None:
    """Delete the staging trees of other runs of `dt` (the caller holds the dt's lease, so they are dead)."""
    base = objectstore.join(root, "_staging", dt)
    mine = url.rstrip("/").split("/")[-2]
    prefix = objectstore.canonical(base, storage_options).rstrip("/") + "/"
    dead: set[str] = set()
    temps: list[str] = []
    for found in objectstore.list_files(base, storage_options):
        rel = found[len(prefix) :].split("/") if found.startswith(prefix) else []
        if len(rel) >= 2 and rel[0] != mine:
            dead.add(rel[0])
        elif len(rel) == 1 and rel[0].startswith(f".{lease.LEASE_NAME}.") and rel[0].endswith(".tmp"):
            temps.append(found)  # a lease write killed half-way
    for key in sorted(dead):
        log.warning("removing staging of a dead run of dt=%s: %s", dt, objectstore.join(base, key))
        objectstore.remove_tree(objectstore.join(base, key), storage_options)
    objectstore.remove(temps, storage_options)


def fence(output_root: str, dt: str, owner: str | None, storage_options: StorageOptions) -> None:
    """Before writing into (output_root, dt): refuse if another run holds its lease."""
    if owner is not None:
        lease.check(output_root, dt, owner, storage_options)


def fence_staging(staging: str, storage_options: StorageOptions) -> None:
    """Before writing a staged file: the run owning this staging root must still hold its dt's lease."""
    layout = lease.run_layout(staging)
    if layout is not None:
        owner = objectstore.canonical(manifest_url(staging), storage_options)
        lease.check(*layout, owner, storage_options)


def owner_of(url: str, storage_options: StorageOptions) -> str:
    """The lease owner a run's writes are fenced with: its manifest's canonical URL."""
    return objectstore.canonical(url, storage_options)


# The end of a run -------------------------------------------------------------------------------------


def finish_partition(plan: RunPlan, dt: str, storage_options: StorageOptions = None) -> None:
    """After every shard of `dt`: mark duplicates across shards, remove staging, release the lease.

    A dt with no shard had no task to write (and prune) its partition; the rerun rule still holds (the
    partition mirrors the listing), so files of an earlier run of this dt go.
    """
    if not plan.shards[dt]:
        removed = remove_stale_parts(plan.output_root, dt, 0, storage_options)
        log.warning("dt=%s: no images in the source; %d old part file(s) removed", dt, removed)
    finalize_partition(plan.output_root, dt, staging_root=plan.staging[dt], storage_options=storage_options)
    remove_staging(plan.staging[dt], storage_options)


def finalize_partition(
    output_root: str, dt: str, *, staging_root: str | None = None, storage_options: StorageOptions = None
) -> int:
    """Once every shard of a run's dt is written: mark duplicates across its shards (`duplicates`).

    Call it before `remove_staging` with the run's `staging_root`: the rewrites are then fenced by the
    run's lease of the partition. Returns the number of `images` files rewritten.
    """
    tables.validate_dt(dt)
    check = None
    if staging_root is not None:

        def check() -> None:
            fence_staging(staging_root, storage_options)

    return duplicates.mark_partition(output_root, dt, storage_options=storage_options, fence=check)


def remove_staging(staging_root: str, storage_options: StorageOptions = None) -> None:
    """Drop a run's staging tree once every shard is published, then release the run's lease of its dt.

    A missing tree is fine (a retried cleanup). The tree goes first: a cleanup that fails keeps the lease,
    so its retry still owns the partition. A staging root laid out by `staging_root()` also takes its
    then-empty `_staging/<dt>` folders along.
    """
    layout = lease.run_layout(staging_root)
    objectstore.remove_tree(staging_root, storage_options)
    if layout is not None:
        owner = objectstore.canonical(manifest_url(staging_root), storage_options)
        lease.release(*layout, owner, storage_options)
        objectstore.prune_empty_parents(staging_root, 2, storage_options)
