"""A run's listing frozen as a manifest Parquet file and split into deterministic shards.

The rule: images sorted by URI, shard = position // shard_size. The manifest is written once per run and
every shard task reads its rows from it, so a retried shard processes exactly the same objects even if the
prefix changed in between.

Two kinds of incremental runs: by ETag (`skip_done_root`: objects already `ok` are left out of the
manifest) and by content (`skip_seen_root`: the SHA-256 of every photo read `ok` on an earlier date is
frozen beside the manifest, `<manifest>.seen.parquet`, and shard tasks skip OCR for objects whose bytes
hash to one of them; only the shard can tell, since a listing has no content hashes).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from wildocr.storage import objectstore, tables
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

log = logging.getLogger(__name__)

_META_KEY = "wildocr.manifest"


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What the manifest file says about itself (stored in its Parquet key/value metadata)."""

    source_prefix: str
    shard_size: int
    n_shards: int
    n_images: int
    skipped_other: int  # objects under the prefix that are not images by extension
    skipped_done: int  # images already `ok` at the output root with the same ETag (incremental runs)
    unreadable_folders: int = 0  # sub-folders that could not be listed (named in the log)
    seen_url: str | None = None  # content-incremental runs: the SHA-256s read on earlier dates

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


def assign_shards(objects: list[ObjectInfo], shard_size: int) -> pa.Table:
    """The manifest table: objects sorted by URI, shard = position // shard_size (pure, deterministic)."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
    ordered = sorted(objects, key=lambda o: o.uri)
    uris = [o.uri for o in ordered]
    if len(set(uris)) != len(uris):
        raise ValueError("duplicate URIs in listing")
    rows = [
        {
            "image_uri": o.uri,
            "etag": o.etag,
            "size": o.size,
            "position": i,
            "shard": i // shard_size,
            "error": o.error,
        }
        for i, o in enumerate(ordered)
    ]
    return tables.to_table(tables.MANIFEST, rows)


def done_keys(
    output_root: str, *, exclude_dt: str, storage_options: StorageOptions = None
) -> set[tuple[str, str]]:
    """(URI, ETag) pairs whose rows in one `images` file are all `ok` (or `skipped`: same bytes read
    earlier), outside the partition `exclude_dt`. A document with one page in error is not done: the
    rerun reads it again, and its pages that were read are written again with it.

    The partition being (re)written is excluded on purpose: its files are replaced shard by shard, so an
    object skipped because of a row there would lose that row when its old shard file is replaced.
    """
    tables.validate_dt(exclude_dt)
    done: set[tuple[str, str]] = set()
    for part in tables.part_files(output_root, "images", storage_options=storage_options):
        if part.dt == exclude_dt:
            continue
        url = part.url
        data = objectstore.read_bytes(url, storage_options)
        table = tables.read_parquet_bytes(data).select(["image_uri", "etag", "status"])
        read = pc.is_in(table["status"], pa.array([tables.STATUS_OK, tables.STATUS_SKIPPED]))
        ok, failed = table.filter(read), table.filter(pc.invert(read))
        failed_keys = set(zip(failed["image_uri"].to_pylist(), failed["etag"].to_pylist(), strict=True))
        done.update(
            key
            for key in zip(ok["image_uri"].to_pylist(), ok["etag"].to_pylist(), strict=True)
            if key not in failed_keys
        )
    return done


def seen_content(output_root: str, *, before_dt: str, storage_options: StorageOptions = None) -> pa.Table:
    """(sha256, image_uri, dt) of the first `ok` copy (by dt, URI) of each content read before `before_dt`.

    Only dates strictly earlier than the partition being written count, so rerunning an old day never
    skips photos because a later day read them. Files written before `images.sha256` existed are passed
    over (their photos are read again).
    """
    tables.validate_dt(before_dt)
    parts: list[pa.Table] = []
    for part in tables.part_files(output_root, "images", storage_options=storage_options):
        url, dt = part.url, part.dt
        if dt >= before_dt:  # YYYY-MM-DD strings sort as dates
            continue
        table = tables.read_columns(
            objectstore.read_bytes(url, storage_options), ["image_uri", "sha256", "status"]
        )
        if table is None:
            continue
        ok = table.filter(pc.and_(pc.equal(table["status"], tables.STATUS_OK), pc.is_valid(table["sha256"])))
        parts.append(
            pa.table(
                {
                    "sha256": ok["sha256"].cast(pa.string()),
                    "image_uri": ok["image_uri"].cast(pa.string()),
                    "dt": pa.array([dt] * ok.num_rows, pa.string()),
                }
            )
        )
    if not parts:
        return tables.SEEN.empty_table()
    table = pa.concat_tables(parts).sort_by(
        [("sha256", "ascending"), ("dt", "ascending"), ("image_uri", "ascending")]
    )
    hashes = table["sha256"].to_pylist()
    first = [i for i, h in enumerate(hashes) if i == 0 or hashes[i - 1] != h]
    return table.take(first).cast(tables.SEEN)


def seen_url_for(manifest_url: str) -> str:
    """`<manifest without .parquet>.seen.parquet`: the content-incremental file lives beside its manifest."""
    base = manifest_url[: -len(".parquet")] if manifest_url.endswith(".parquet") else manifest_url
    return f"{base}.seen.parquet"


def read_seen(info: ManifestInfo, storage_options: StorageOptions = None) -> dict[str, str]:
    """SHA-256 -> URI of its first copy, for a content-incremental manifest; {} for any other."""
    if info.seen_url is None:
        return {}
    data = objectstore.read_bytes(info.seen_url, storage_options)
    table = tables.read_parquet_bytes(data, tables.SEEN)
    return dict(zip(table["sha256"].to_pylist(), table["image_uri"].to_pylist(), strict=True))


def write_manifest(
    manifest_url: str,
    source_prefix: str,
    *,
    shard_size: int,
    storage_options: StorageOptions = None,
    skip_done_root: str | None = None,
    dt: str | None = None,
    skip_seen_root: str | None = None,
) -> ManifestInfo:
    """List `source_prefix`, drop already-done images (incremental), shard, write the manifest atomically.

    `skip_seen_root` (content-incremental, needs `dt`): also freeze the hashes read before `dt` in
    `seen_url_for(manifest_url)`, written before the manifest that names it.
    """
    listing = objectstore.list_images(source_prefix, storage_options)
    images = listing.images
    skipped_done = 0
    if skip_done_root is not None:
        if dt is None:
            raise ValueError("an incremental manifest (skip_done_root) needs the dt partition it will write")
        done = done_keys(skip_done_root, exclude_dt=dt, storage_options=storage_options)
        kept = [o for o in images if (o.uri, o.etag) not in done]
        skipped_done = len(images) - len(kept)
        images = kept
    seen_url = None
    if skip_seen_root is not None:
        if dt is None:
            raise ValueError(
                "a content-incremental manifest (skip_seen_root) needs the dt partition it will write"
            )
        seen = seen_content(skip_seen_root, before_dt=dt, storage_options=storage_options)
        seen_url = seen_url_for(manifest_url)
        objectstore.write_bytes_atomic(seen_url, tables.parquet_bytes(seen), storage_options)
        log.info("content-incremental: %d contents read before dt=%s, in %s", seen.num_rows, dt, seen_url)
    table = assign_shards(images, shard_size)
    n_shards = -(-len(images) // shard_size)
    info = ManifestInfo(
        source_prefix=source_prefix,
        shard_size=shard_size,
        n_shards=n_shards,
        n_images=len(images),
        skipped_other=listing.skipped,
        skipped_done=skipped_done,
        unreadable_folders=len(listing.unreadable),
        seen_url=seen_url,
    )
    data = tables.parquet_bytes(table, extra_metadata={_META_KEY: json.dumps(info.to_json(), sort_keys=True)})
    objectstore.write_bytes_atomic(manifest_url, data, storage_options)
    log.info(
        "manifest %s: %d images in %d shards of %d (%d non-images skipped, %d already done)",
        manifest_url,
        info.n_images,
        n_shards,
        shard_size,
        info.skipped_other,
        skipped_done,
    )
    if listing.unreadable:
        log.warning(
            "%d folder(s) under the source could not be listed; their images are not in this run: %s",
            len(listing.unreadable),
            ", ".join(listing.unreadable),
        )
    return info


def read_manifest(manifest_url: str, storage_options: StorageOptions = None) -> tuple[pa.Table, ManifestInfo]:
    data = objectstore.read_bytes(manifest_url, storage_options)
    table = tables.read_parquet_bytes(data, tables.MANIFEST)
    meta = json.loads(tables.file_metadata(data)[_META_KEY])
    return table, ManifestInfo(**meta)


def shard_objects(
    manifest_url: str, shard: int, storage_options: StorageOptions = None
) -> tuple[list[ObjectInfo], ManifestInfo]:
    """The objects of one shard, in manifest order; a shard outside the manifest is an error."""
    tables.validate_shard(shard)
    table, info = read_manifest(manifest_url, storage_options)
    if shard >= info.n_shards:
        raise ValueError(f"shard {shard} is not in {manifest_url} ({info.n_shards} shards)")
    part = table.filter(pc.equal(table["shard"], shard)).sort_by("position")
    columns = (part[name].to_pylist() for name in ("image_uri", "size", "etag", "error"))
    objects = [ObjectInfo(uri=u, size=s, etag=e, error=x) for u, s, e, x in zip(*columns, strict=True)]
    return objects, info
