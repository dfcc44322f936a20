"""The fused path: a shard read end to end in one process, and a whole run in one process (`wildocr run`).

Errors that belong to one object become its `error` row and the shard goes on (pipeline/outcome.py); an
engine that fails on everything, or a storage outage, fails the shard, and its retry rewrites the same files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from wildocr.engine.imageio import DEFAULT_MAX_PAGES, DEFAULT_MAX_PIXELS
from wildocr.pipeline import outcome, run
from wildocr.pipeline.outcome import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_SECONDS_PER_IMAGE,
    DEFAULT_PREFETCH,
    Engine,
)
from wildocr.pipeline.outputs import ShardRows, ShardSummary
from wildocr.pipeline.run import RunPlan
from wildocr.storage import manifest, tables
from wildocr.storage.objectstore import StorageOptions

log = logging.getLogger(__name__)


def process_shard(
    manifest_url: str,
    shard: int,
    *,
    output_root: str,
    dt: str,
    run_id: str,
    engine: Engine,
    storage_options: StorageOptions = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    prefetch: int = DEFAULT_PREFETCH,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_seconds_per_image: float | None = DEFAULT_MAX_SECONDS_PER_IMAGE,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> ShardSummary:
    """Read, OCR and write one shard of a manifest; returns its summary.

    Memory: at most `prefetch + chunk_size` decoded images at a time (plus the crops of one chunk).
    """
    started = time.perf_counter()
    tables.validate_dt(dt)
    engine.load("detect", "recognize")  # a bad model file fails the task before any image is read
    owner = run.owner_of(manifest_url, storage_options)
    run.fence(output_root, dt, owner, storage_options)  # a run without the lease stops before reading
    objects, info = manifest.shard_objects(manifest_url, shard, storage_options)
    seen = manifest.read_seen(info, storage_options)
    rows = ShardRows(shard, run_id, dict(engine.model_info))
    results = outcome.read_objects(
        engine,
        objects,
        storage_options,
        seen=seen,
        chunk_size=chunk_size,
        prefetch=prefetch,
        max_pixels=max_pixels,
        max_seconds=max_seconds_per_image,
        max_pages=max_pages,
    )
    done = 0
    for pages, (result, _) in enumerate(results, start=1):
        rows.add(result)
        if result.page == 1:  # a document's first page: one more object under way
            done += 1
            if done % chunk_size == 0 or done == len(objects):
                log.info("shard %d: %d/%d images read (%d pages)", shard, done, len(objects), pages)
    return rows.write(
        output_root,
        dt,
        n_shards=info.n_shards,
        storage_options=storage_options,
        owner=owner,
        started=started,
    )


def process_run(
    plan: RunPlan,
    engine: Engine,
    *,
    storage_options: StorageOptions = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    prefetch: int = DEFAULT_PREFETCH,
    on_shard: Callable[[ShardSummary], None] | None = None,
) -> list[ShardSummary]:
    """Every shard of a planned run in this process, then each partition's end (`run.finish_partition`).

    The leases are released even when a shard fails (this process writes nothing more); only a killed
    process keeps them, for a rerun with the same run id to take over.
    """
    summaries: list[ShardSummary] = []
    try:
        for spec in plan.specs():
            summary = process_shard(
                spec.manifest_url,
                spec.shard,
                output_root=spec.output_root,
                dt=spec.dt,
                run_id=spec.run_id,
                engine=engine,
                storage_options=storage_options,
                chunk_size=chunk_size,
                prefetch=prefetch,
            )
            summaries.append(summary)
            if on_shard is not None:
                on_shard(summary)
        for dt in plan.dts:
            run.finish_partition(plan, dt, storage_options)
    finally:  # only this run's staging and leases: another run's lease is never released here
        for dt in plan.dts:
            run.remove_staging(plan.staging[dt], storage_options)
    return summaries
