"""A shard's output: its two part files, written atomically under the run's lease, and its summary.

Rows become part files only here: the fused and staged paths both end in `ShardRows.write`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from wildocr.pipeline import duplicates, outcome
from wildocr.pipeline.outcome import ImageOutcome
from wildocr.storage import lease, objectstore, tables
from wildocr.storage.objectstore import StorageOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShardSummary:
    """What one shard wrote: counts, timings, files and the models that read the images (its XCom).

    `images` counts `images` rows, one per page read (a photo is one page); `objects` the objects they
    belong to (a 3-page PDF: 3 and 1).
    """

    shard: int
    dt: str
    images: int
    ok: int
    errors: int
    skipped: int
    words: int
    det_seconds: float
    rec_seconds: float
    seconds: float
    images_url: str
    words_url: str
    images_bytes: int
    words_bytes: int
    models: dict[str, str | None] = field(default_factory=dict)
    objects: int = 0

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Any) -> ShardSummary | None:
        """The summary in an XCom value; None for anything else (a staged step's file URL, a skip)."""
        if not isinstance(value, Mapping) or not set(cls.__slots__) - {"objects"} <= set(value):
            return None
        return cls(**{k: value[k] for k in cls.__slots__ if k in value})


_COUNTS = ("images", "objects", "ok", "errors", "words")  # images: rows, one per page


def run_figures(summaries: Iterable[ShardSummary], dts: Sequence[str]) -> dict[str, Any]:
    """Totals, per-dt counts and model hashes of a run from its shard summaries.

    Every dt of the run is present, with zeros when it had no images.
    """
    by_dt: dict[str, dict[str, int]] = {dt: dict.fromkeys(_COUNTS, 0) for dt in dts}
    models: dict[str, str] = {}
    for summary in summaries:
        counts = by_dt.setdefault(summary.dt, dict.fromkeys(_COUNTS, 0))
        for key in _COUNTS:
            counts[key] += int(getattr(summary, key))
        for key, value in summary.models.items():
            if value:
                models.setdefault(key, value)
    totals = {key: sum(c[key] for c in by_dt.values()) for key in _COUNTS}
    return {**totals, "models": models, "by_dt": by_dt}


def write_outputs(
    output_root: str,
    dt: str,
    shard: int,
    images: pa.Table,
    words: pa.Table,
    *,
    n_shards: int,
    storage_options: StorageOptions = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Replace the shard's two part files, `words` first: the `images` file is the shard's commit record.

    Returns `{"images": url, "words": url, "images_bytes": n, "words_bytes": n}`.

    Part files of shards this manifest does not have (a previous run of the same dt had more shards) are
    removed, so a rerun of a partition never leaves rows of the old run beside the new ones.
    `owner` (the run's canonical manifest URL) is checked against the dt's lease before each write.
    """
    if not images.schema.equals(tables.IMAGES, check_metadata=False):
        raise ValueError("images table does not have the IMAGES schema")
    if not words.schema.equals(tables.WORDS, check_metadata=False):
        raise ValueError("words table does not have the WORDS schema")

    def fence() -> None:
        if owner is not None:
            lease.check(output_root, dt, owner, storage_options)

    written: dict[str, Any] = {}
    for name, table in (("words", words), ("images", images)):
        url = tables.part_url(output_root, name, dt, shard)
        data = tables.parquet_bytes(table)
        fence()
        written[name] = objectstore.write_bytes_atomic(url, data, storage_options)
        written[f"{name}_bytes"] = len(data)
    fence()
    remove_stale_parts(output_root, dt, n_shards, storage_options)
    return written


def remove_stale_parts(
    output_root: str, dt: str, n_shards: int, storage_options: StorageOptions = None
) -> int:
    """Delete `part-SSSSS.parquet` files with SSSSS >= n_shards in both tables' `dt` partition."""
    stale = [
        part.url
        for name in tables.TABLES
        for part in tables.part_files(output_root, name, dt, storage_options)
        if part.shard >= n_shards
    ]
    if stale:
        log.info("removing %d part files left by an earlier run with more shards: %s", len(stale), stale)
    return objectstore.remove(stale, storage_options)


class ShardRows:
    """A shard's rows, added outcome by outcome, then written: how both paths (fused, and staged publish)
    end. `processed_at` None stamps each row when it is added."""

    def __init__(
        self, shard: int, run_id: str, model_info: dict[str, str], processed_at: _dt.datetime | None = None
    ) -> None:
        self.shard, self.run_id, self.model_info, self.processed_at = shard, run_id, model_info, processed_at
        self.images: list[dict[str, Any]] = []
        self.words = tables.TableBuilder(tables.WORDS)

    def add(self, result: ImageOutcome) -> None:
        stamp = self.processed_at or tables.utc_now()
        self.images.append(
            outcome.image_row(
                result, run_id=self.run_id, shard=self.shard, processed_at=stamp, model_info=self.model_info
            )
        )
        self.words.extend(outcome.word_rows(result, self.shard))

    def write(
        self,
        output_root: str,
        dt: str,
        *,
        n_shards: int,
        storage_options: StorageOptions,
        owner: str | None,
        started: float,
    ) -> ShardSummary:
        """Duplicates marked within the shard, its two part files written, its summary returned."""
        duplicates.mark_rows(self.images)
        images = tables.to_table(tables.IMAGES, self.images)
        words = self.words.table()
        written = write_outputs(
            output_root,
            dt,
            self.shard,
            images,
            words,
            n_shards=n_shards,
            storage_options=storage_options,
            owner=owner,
        )
        status = images["status"].to_pylist()
        models = {  # one engine per shard: the first non-null value is the shard's
            key: next((v for v in images[key].to_pylist() if v), None) for key in tables.PROVENANCE_KEYS
        }
        summary = ShardSummary(
            shard=self.shard,
            dt=dt,
            images=images.num_rows,
            ok=status.count(tables.STATUS_OK),
            errors=status.count(tables.STATUS_ERROR),
            skipped=status.count(tables.STATUS_SKIPPED),
            words=words.num_rows,
            det_seconds=round(float(sum(images["det_seconds"].to_pylist())), 3),
            rec_seconds=round(float(sum(images["rec_seconds"].to_pylist())), 3),
            seconds=round(time.perf_counter() - started, 3),
            images_url=written["images"],
            words_url=written["words"],
            images_bytes=written["images_bytes"],
            words_bytes=written["words_bytes"],
            models=models,
            objects=len(set(images["image_uri"].to_pylist())),
        )
        log.info("shard %d written: %s", self.shard, json.dumps(summary.to_xcom()))
        return summary
