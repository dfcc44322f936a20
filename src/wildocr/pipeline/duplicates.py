"""Identical photos under different keys: `images.duplicate_of` names the first copy in the partition.

Rule: among the rows of one dt partition that were read (status `ok` or `error`, sha256 known), the row
with the smallest URI of each SHA-256 is the original (`duplicate_of` null) and every other row with the
same hash gets its URI (every page of a document has its object's URI and hash, so all pages of a copy
point at the first copy, and the pages of the first copy at nothing). Rows `skipped` by a
content-incremental run already point at the copy read on an earlier date and are left alone.

Shards are processed independently, so each shard marks the duplicates it can see (`mark_rows`), and
the step that runs once per partition after every shard (`finalize_partition`: the DAGs' `finalize`
task, the end of `wildocr run`, `wildocr shard finalize`) applies the rule to the whole partition
(`mark_partition`), rewriting only the `images` part files whose `duplicate_of` changes. Between the
last shard and that step a copy in a later shard may still lack its mark. The manifest sorts objects by
URI and shards are URI ranges, so only copies in later shards than their original need that pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any

import pyarrow as pa

from wildocr.storage import objectstore, tables
from wildocr.storage.objectstore import StorageOptions

log = logging.getLogger(__name__)


def first_copies(rows: Iterable[tuple[str, str | None, str]]) -> dict[str, str]:
    """SHA-256 -> the smallest URI with it, over (uri, sha256, status) rows that were read (not skipped)."""
    first: dict[str, str] = {}
    for uri, sha256, status in rows:
        if sha256 is None or status == tables.STATUS_SKIPPED:
            continue
        if sha256 not in first or uri < first[sha256]:
            first[sha256] = uri
    return first


def mark_rows(rows: Sequence[MutableMapping[str, Any]]) -> None:
    """Set `duplicate_of` on `images` rows (in place) by the rule above, among these rows only."""
    first = first_copies((r["image_uri"], r["sha256"], r["status"]) for r in rows)
    for row in rows:
        if row["status"] != tables.STATUS_SKIPPED:
            original = first.get(row["sha256"]) if row["sha256"] is not None else None
            row["duplicate_of"] = original if original != row["image_uri"] else None


def mark_partition(
    output_root: str,
    dt: str,
    *,
    storage_options: StorageOptions = None,
    fence: Callable[[], None] | None = None,
) -> int:
    """Apply the rule to every `images` part file of `ROOT/images/dt=<dt>`; returns the files rewritten.

    `fence`, when given, is called before each write (the run's lease check). Files written before
    `images.sha256` existed are left as they are.
    """
    parts: list[tuple[str, pa.Table]] = []
    for part in tables.part_files(output_root, "images", dt, storage_options):
        table = tables.read_parquet_bytes(objectstore.read_bytes(part.url, storage_options))
        if "sha256" in table.schema.names:
            parts.append((part.url, table))
    first = first_copies(
        row
        for _, table in parts
        for row in zip(
            table["image_uri"].to_pylist(),
            table["sha256"].to_pylist(),
            table["status"].to_pylist(),
            strict=True,
        )
    )
    rewritten = 0
    for url, table in parts:
        current = table["duplicate_of"].to_pylist()
        marked = [
            old
            if status == tables.STATUS_SKIPPED
            else (None if sha is None or first.get(sha) in (None, uri) else first[sha])
            for uri, sha, status, old in zip(
                table["image_uri"].to_pylist(),
                table["sha256"].to_pylist(),
                table["status"].to_pylist(),
                current,
                strict=True,
            )
        ]
        if marked == current:
            continue
        index = table.schema.get_field_index("duplicate_of")
        table = table.set_column(index, table.schema.field(index), pa.array(marked, pa.string()))
        if fence is not None:
            fence()
        if table.schema.names == tables.IMAGES.names:
            table = table.cast(tables.IMAGES)
        # else a file of an older schema version (no `page`): rewritten in its own schema, as it was
        objectstore.write_bytes_atomic(url, tables.parquet_bytes(table), storage_options)
        rewritten += 1
        log.info("%s: duplicate_of updated across shards", url)
    return rewritten
