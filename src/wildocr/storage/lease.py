"""One run at a time per output partition: a lease object per (output root, dt).

Why: a run replaces its `dt` partition shard by shard. Two runs of one dt at the same time (a manual
trigger beside the nightly run, a backfill overlapping it, two CLI runs) would interleave their part files;
with different listings that means rows of both runs side by side, duplicates or holes. The rule that keeps
this easy to reason about: **a dt partition is written only by the run that holds its lease.**

- `ROOT/_staging/<dt>/_lease.json` is created with a create-if-absent write (S3 `If-None-Match: *`, a hard
  link locally) when a run writes its manifest under `ROOT/_staging/<dt>/<run-key>/`. The lease names that
  manifest: the manifest is the run's identity, because it fixes which objects the partition will hold.
- The run holding it may take it again (task retries, cleared tasks, a rebuilt manifest): re-entrant.
- Any other run is refused with `PartitionBusyError` before it writes anything; the orchestrator's retries
  (with backoff) are the wait.
- Every write of a part or staged file first checks that the lease still names the writer's manifest
  (fencing), so a run whose lease was taken away by hand stops at its next write.
- `remove_staging`, the run's last step, releases it. A crashed run that is never resumed keeps it:
  resume that run (same run id), or remove the lease (`wildocr shard unlock`) once it is surely dead.
"""

from __future__ import annotations

import json
import logging
import os
import socket

from wildocr.storage import objectstore, tables
from wildocr.storage.objectstore import StorageOptions

log = logging.getLogger(__name__)

LEASE_NAME = "_lease.json"


class PartitionBusyError(RuntimeError):
    """Another run holds the lease of the partition (dt) this run wants to write."""


def lease_url(output_root: str, dt: str) -> str:
    return objectstore.join(output_root, "_staging", tables.validate_dt(dt), LEASE_NAME)


def run_layout(url: str) -> tuple[str, str] | None:
    """(output root, dt) of a run's staging root or manifest laid out as `ROOT/_staging/<dt>/<run-key>`.

    None for any other URL (a manifest written elsewhere by hand is not a managed run: no lease).
    """
    parts = url.rstrip("/").split("/")
    if parts and parts[-1] == "manifest.parquet":
        parts = parts[:-1]
    if len(parts) >= 4 and parts[-3] == "_staging" and tables.is_valid_dt(parts[-2]) and parts[-1]:
        return "/".join(parts[:-3]), parts[-2]
    return None


def holder(output_root: str, dt: str, storage_options: StorageOptions = None) -> dict | None:
    """The lease's content (owner, acquired_at, host, pid), or None when the partition is free."""
    url = lease_url(output_root, dt)
    try:
        data = objectstore.read_bytes(url, storage_options)
    except FileNotFoundError:
        return None
    try:
        value = json.loads(data)
        if isinstance(value, dict) and isinstance(value.get("owner"), str):
            return value
    except ValueError:
        pass
    return {"owner": f"<unreadable lease {url}>"}


def _busy(output_root: str, dt: str, current: dict, wanted: str) -> PartitionBusyError:
    return PartitionBusyError(
        f"dt={dt} under {output_root} is being written by another run: the lease "
        f"{lease_url(output_root, dt)} names {current.get('owner')} (since {current.get('acquired_at')}, "
        f"host {current.get('host')}, pid {current.get('pid')}), not {wanted}. Wait for that run to finish "
        "(this task's retries do), resume it with its own run id, or, once it is surely dead, remove the "
        "lease with `wildocr shard unlock`."
    )


def acquire(output_root: str, dt: str, owner: str, storage_options: StorageOptions = None) -> bool:
    """Take the lease of (output_root, dt) for `owner` (a canonical manifest URL), or PartitionBusyError.

    True when taken now, False when `owner` already held it.
    """
    url = lease_url(output_root, dt)
    body = {
        "owner": owner,
        "dt": dt,
        "acquired_at": tables.utc_now().isoformat(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    for _ in range(3):  # a lease released between our failed create and our read: try again
        try:
            objectstore.create_exclusive(url, json.dumps(body, sort_keys=True).encode(), storage_options)
            log.info("lease %s taken for %s", url, owner)
            return True
        except FileExistsError:
            pass
        current = holder(output_root, dt, storage_options)
        if current is None:
            continue
        if current["owner"] == owner:
            log.info("lease %s already held by this run (%s)", url, owner)
            return False
        raise _busy(output_root, dt, current, owner)
    raise PartitionBusyError(f"could not take the lease {url}: it keeps appearing and disappearing")


def check(output_root: str, dt: str, owner: str, storage_options: StorageOptions = None) -> None:
    """Fencing before a write: refuse when another run holds the partition (no lease: an unmanaged write)."""
    current = holder(output_root, dt, storage_options)
    if current is not None and current["owner"] != owner:
        raise _busy(output_root, dt, current, owner)


def release(output_root: str, dt: str, owner: str, storage_options: StorageOptions = None) -> bool:
    """Drop the lease if `owner` holds it; True when it was dropped. Someone else's lease stays."""
    current = holder(output_root, dt, storage_options)
    if current is None or current["owner"] != owner:
        return False
    objectstore.remove([lease_url(output_root, dt)], storage_options)
    log.info("lease %s released by %s", lease_url(output_root, dt), owner)
    return True


def force_release(output_root: str, dt: str, storage_options: StorageOptions = None) -> dict | None:
    """Remove the lease whoever holds it (an operator decided its run is dead); returns what it said."""
    current = holder(output_root, dt, storage_options)
    if current is not None:
        objectstore.remove([lease_url(output_root, dt)], storage_options)
        log.warning("lease %s removed by hand; it named %s", lease_url(output_root, dt), current["owner"])
    return current
