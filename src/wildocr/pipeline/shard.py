"""One shard end to end: objects from the manifest in, `images` and `words` partition files out.

Two ways to run a shard, producing identical table rows:
- fused: `process_shard` streams the shard through `engine.read` in small chunks;
- staged (the Airflow multi-task pipeline): `detect_shard` → `crop_shard` → `recognize_shard` →
  `publish_shard`, each stage reading the previous stage's Parquet file under the run's staging root.

Memory: images are fetched by a thread pool at most `prefetch` ahead and handed to the engine `chunk_size`
at a time, so a shard never holds more than `prefetch + chunk_size` decoded images.

Errors that belong to one object (not an image, truncated, deleted since listing, access denied, over the
pixel or time limit, an image the engine fails on while it reads others) become an `error` row and the
shard goes on; anything else (an engine that fails on everything, a storage outage) fails the shard so that
the orchestrator retries it, and the retry rewrites the same files.

A run writes its dt partition only while it holds the partition's lease (`wildocr.storage.lease`): taken
with the manifest, checked before every write, released by `remove_staging`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wildocr.engine.imageio import DEFAULT_MAX_PIXELS
from wildocr.engine.types import Detection, ImageResult, Reading, Word
from wildocr.pipeline import duplicates
from wildocr.pipeline.loader import Loaded, chunked, iter_loaded
from wildocr.storage import lease, manifest, objectstore, tables
from wildocr.storage.lease import PartitionBusyError as PartitionBusyError  # for callers of this module
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 8
DEFAULT_PREFETCH = 4
DEFAULT_REC_CHUNK = 256  # crops decoded at once by recognize_shard
# Decoding + detection of one image taking longer than this gives an error row instead of its words. The
# time is spent by then: this marks pathological images, it does not stop them (the pixel limit and the
# detector's fixed input size are what bound the work per image). None turns it off.
DEFAULT_MAX_SECONDS_PER_IMAGE = 300.0

_MODEL_META = "wildocr.model_info"
_ERRORS_META = "wildocr.errors"


class Engine(Protocol):
    """What the storage layer needs from `wildocr.engine.OCREngine`."""

    model_info: dict[str, str]

    def read(self, images: Sequence[np.ndarray]) -> list[ImageResult]: ...
    def detect(self, image: np.ndarray) -> list[Detection]: ...
    def crop(self, image: np.ndarray, detections: Sequence[Detection]) -> list[np.ndarray]: ...
    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]: ...
    def assemble(
        self, image_size: tuple[int, int], detections: Sequence[Detection], readings: Sequence[Reading]
    ) -> list[Word]: ...


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
    if stage not in ("detections", "crops", "readings", "words"):
        raise ValueError(f"unknown stage {stage!r}")
    return objectstore.join(staging, stage, tables.part_name(shard))


# Manifest ---------------------------------------------------------------------------------------------


def build_manifest(
    source_prefix: str,
    manifest_url: str,
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
    layout = lease.run_layout(manifest_url)
    taken = False
    if layout is not None:
        root, layout_dt = layout
        if dt is not None and dt != layout_dt:
            raise ValueError(f"dt={dt} but the manifest {manifest_url} is laid out for dt={layout_dt}")
        owner = objectstore.canonical(manifest_url, storage_options)
        taken = lease.acquire(root, layout_dt, owner, storage_options)
    try:
        if layout is not None:
            _remove_dead_staging(*layout, manifest_url, storage_options)
        info = manifest.write_manifest(
            manifest_url,
            source_prefix,
            shard_size=shard_size,
            storage_options=storage_options,
            skip_done_root=skip_done_root,
            dt=dt,
            skip_seen_root=skip_seen_root,
        )
    except BaseException:
        if taken:
            lease.release(*layout, owner, storage_options)
        raise
    return list(range(info.n_shards))


def _remove_dead_staging(root: str, dt: str, manifest_url: str, storage_options: StorageOptions) -> None:
    """Delete the staging trees of other runs of `dt` (the caller holds the dt's lease, so they are dead)."""
    base = objectstore.join(root, "_staging", dt)
    mine = manifest_url.rstrip("/").split("/")[-2]
    prefix = objectstore.canonical(base, storage_options).rstrip("/") + "/"
    dead: set[str] = set()
    temps: list[str] = []
    for url in objectstore.list_files(base, storage_options):
        rel = url[len(prefix) :].split("/") if url.startswith(prefix) else []
        if len(rel) >= 2 and rel[0] != mine:
            dead.add(rel[0])
        elif len(rel) == 1 and rel[0].startswith(f".{lease.LEASE_NAME}.") and rel[0].endswith(".tmp"):
            temps.append(url)  # a lease write killed half-way
    for key in sorted(dead):
        log.warning("removing staging of a dead run of dt=%s: %s", dt, objectstore.join(base, key))
        objectstore.remove_tree(objectstore.join(base, key), storage_options)
    objectstore.remove(temps, storage_options)


def _fence(output_root: str, dt: str, owner: str | None, storage_options: StorageOptions) -> None:
    """Before writing into (output_root, dt): refuse if another run holds its lease."""
    if owner is not None:
        lease.check(output_root, dt, owner, storage_options)


def _fence_staging(staging: str, storage_options: StorageOptions) -> None:
    """Before writing a staged file: the run owning this staging root must still hold its dt's lease."""
    layout = lease.run_layout(staging)
    if layout is not None:
        owner = objectstore.canonical(manifest_url(staging), storage_options)
        lease.check(*layout, owner, storage_options)


# Reading with the engine ------------------------------------------------------------------------


def over_time(seconds: float, limit: float | None) -> str | None:
    """The error of an image whose decoding + detection took longer than `limit` seconds, else None."""
    if limit is None or seconds <= limit:
        return None
    return f"refused: decoding and detection took {seconds:.3f} s, over the per-image limit of {limit:g} s"


_PROBE = np.full((64, 64, 3), 255, np.uint8)


def engine_works(engine: Engine) -> bool:
    """Whether the engine still reads a plain white image: tells a broken engine from one bad image."""
    try:
        engine.read([_PROBE])
    except Exception:
        log.exception("the engine fails on a blank probe image: treating it as broken")
        return False
    return True


def read_isolated(engine: Engine, images: Sequence[np.ndarray]) -> list[ImageResult | str]:
    """`engine.read`, except that an image the engine raises on becomes an error message for it alone.

    When a batch fails, the engine is probed with a blank image: if that fails too the engine is broken and
    the exception propagates (the shard fails and is retried); otherwise the images are read one by one,
    so one poisonous image costs its own row, not the shard (it would fail every retry).
    """
    try:
        return list(engine.read(images))
    except Exception as exc:
        log.warning("engine.read failed on a batch of %d images (%s); checking the engine", len(images), exc)
        if not engine_works(engine):
            raise
    out: list[ImageResult | str] = []
    for image in images:
        try:
            out.extend(engine.read([image]))
        except Exception as exc:
            log.warning("engine failed on one image of %dx%d: %r", image.shape[1], image.shape[0], exc)
            out.append(f"engine failed on this image: {type(exc).__name__}: {exc}")
    return out


# Writing the output tables ----------------------------------------------------------------------------


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

    Returns `{"images": url, "words": url, "images_bytes": n, "words_bytes": n}` (what was written, for
    the task's summary and its lineage).

    Part files of shards this manifest does not have (a previous run of the same dt had more shards) are
    removed, so a rerun of a partition never leaves rows of the old run beside the new ones.
    `owner` (the run's canonical manifest URL) is checked against the dt's lease before each write.
    """
    if not images.schema.equals(tables.IMAGES, check_metadata=False):
        raise ValueError("images table does not have the IMAGES schema")
    if not words.schema.equals(tables.WORDS, check_metadata=False):
        raise ValueError("words table does not have the WORDS schema")
    written: dict[str, Any] = {}
    for name, table in (("words", words), ("images", images)):
        url = tables.part_url(output_root, name, dt, shard)
        data = tables.parquet_bytes(table)
        _fence(output_root, dt, owner, storage_options)
        written[name] = objectstore.write_bytes_atomic(url, data, storage_options)
        written[f"{name}_bytes"] = len(data)
    _fence(output_root, dt, owner, storage_options)
    remove_stale_parts(output_root, dt, n_shards, storage_options)
    return written


def remove_stale_parts(
    output_root: str, dt: str, n_shards: int, storage_options: StorageOptions = None
) -> int:
    """Delete `part-SSSSS.parquet` files with SSSSS >= n_shards in both tables' `dt` partition."""
    stale = []
    for name in tables.TABLES:
        for url in objectstore.list_files(tables.partition_url(output_root, name, dt), storage_options):
            number = tables.parse_part_name(url.rsplit("/", 1)[-1])
            if number is not None and number >= n_shards:
                stale.append(url)
    if stale:
        log.info("removing %d part files left by an earlier run with more shards: %s", len(stale), stale)
    return objectstore.remove(stale, storage_options)


def _write_shard(
    output_root: str,
    dt: str,
    shard: int,
    images: pa.Table,
    words: pa.Table,
    n_shards: int,
    storage_options: StorageOptions,
    owner: str | None,
    start: float,
    verb: str,
) -> dict:
    """The last step of both paths (fused and publish): the shard's two files, then its XCom summary."""
    written = write_outputs(
        output_root, dt, shard, images, words, n_shards=n_shards, storage_options=storage_options, owner=owner
    )
    summary = _summary(shard, dt, images, words, written, time.perf_counter() - start)
    log.info("shard %d %s: %s", shard, verb, json.dumps(summary))
    return summary


def _summary(
    shard: int, dt: str, images: pa.Table, words: pa.Table, written: dict[str, Any], seconds: float
) -> dict:
    """The shard's XCom value: counts, timings, the files written and the models that read the images."""
    status = images["status"].to_pylist()
    models = {
        key: next((v for v in images[key].to_pylist() if v), None) for key in tables.MODEL_KEYS
    }  # one engine per shard: the first non-null value is the shard's
    return {
        "shard": shard,
        "dt": dt,
        "images": images.num_rows,
        "ok": status.count(tables.STATUS_OK),
        "errors": status.count(tables.STATUS_ERROR),
        "skipped": status.count(tables.STATUS_SKIPPED),
        "words": words.num_rows,
        "det_seconds": round(float(sum(images["det_seconds"].to_pylist())), 3),
        "rec_seconds": round(float(sum(images["rec_seconds"].to_pylist())), 3),
        "seconds": round(seconds, 3),
        "images_url": written["images"],
        "words_url": written["words"],
        "images_bytes": written["images_bytes"],
        "words_bytes": written["words_bytes"],
        "models": models,
    }


# Fused path -------------------------------------------------------------------------------------------


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
) -> dict:
    """Read, OCR and write one shard in one process; returns a small JSON-able summary (for XCom).

    Memory: at most `prefetch + chunk_size` decoded images at a time (plus the crops of one chunk).
    """
    start = time.perf_counter()
    tables.validate_dt(dt)
    owner = objectstore.canonical(manifest_url, storage_options)
    _fence(output_root, dt, owner, storage_options)  # a run without the lease stops before reading
    objects, info = manifest.shard_objects(manifest_url, shard, storage_options)
    seen = manifest.read_seen(info, storage_options)
    model_info = dict(engine.model_info)
    image_rows: list[dict] = []
    words = tables.TableBuilder(tables.WORDS)
    loaded = iter_loaded(
        objects, storage_options, prefetch=prefetch, max_pixels=max_pixels, skip_sha256=seen or None
    )
    done = 0
    for chunk in chunked(loaded, chunk_size):
        good = [item for item in chunk if item.image is not None]
        results = iter(read_isolated(engine, [item.image for item in good]) if good else [])
        for item in chunk:
            result = next(results) if item.image is not None else None
            item.image = None  # let the pixels go as soon as they are read
            error = item.error
            if isinstance(result, str):  # the engine failed on this image alone
                result, error = None, result
            elif result is not None:
                error = over_time(item.decode_seconds + result.det_seconds, max_seconds_per_image)
            image_rows.append(_image_row(item, result, error, model_info, run_id, shard, seen))
            if result is not None and result.ok and error is None:
                words.extend(tables.word_rows(item.obj.uri, result.words, shard))
        done += len(chunk)
        log.info("shard %d: %d/%d images read", shard, done, len(objects))
    duplicates.mark_rows(image_rows)
    images = tables.to_table(tables.IMAGES, image_rows)
    return _write_shard(
        output_root, dt, shard, images, words.table(), info.n_shards, storage_options, owner, start, "done"
    )


def _image_row(
    item: Loaded,
    result: ImageResult | None,
    error: str | None,
    model_info: dict[str, str],
    run_id: str,
    shard: int,
    seen: dict[str, str],
) -> dict:
    """The `images` row of one object: `error` (decoding, time limit) wins over the engine's result."""
    obj = item.obj
    content = {"sha256": item.sha256, "photo": tables.photo_values(item.metadata)}
    if item.skipped:  # bytes read on an earlier date: not decoded, not OCRed
        content.update(skipped=True, duplicate_of=seen[item.sha256])
    engine_values = {}
    if result is not None:
        engine_values = {
            "width": result.width,
            "height": result.height,
            "n_words": len(result.words) if result.ok and error is None else 0,
            "det_seconds": result.det_seconds,
            "rec_seconds": result.rec_seconds,
        }
    return tables.image_row(
        image_uri=obj.uri,
        etag=obj.etag,
        size=obj.size,
        run_id=run_id,
        shard=shard,
        processed_at=tables.utc_now(),
        model_info=model_info,
        error=error if result is None else error or result.error,
        **engine_values,
        **content,
    )


# Staged path ------------------------------------------------------------------------------------------


def _write_stage(url: str, table: pa.Table, meta: dict[str, Any], storage_options: StorageOptions) -> str:
    extra = {key: json.dumps(value, sort_keys=True) for key, value in meta.items()}
    return objectstore.write_bytes_atomic(
        url, tables.parquet_bytes(table, extra_metadata=extra), storage_options
    )


def _read_stage(
    url: str, schema: pa.Schema, storage_options: StorageOptions
) -> tuple[pa.Table, dict[str, Any]]:
    data = objectstore.read_bytes(url, storage_options)
    meta = {
        k: json.loads(v)
        for k, v in tables.file_metadata(data).items()
        if k.startswith("wildocr.") and k not in ("wildocr.table", "wildocr.schema_version")
    }
    return tables.read_parquet_bytes(data, schema), meta


def _detections_of(row: dict) -> list[Detection]:
    return [
        Detection(quad=((q[0], q[1]), (q[2], q[3]), (q[4], q[5]), (q[6], q[7])), score=s)
        for q, s in zip(row["quads"], row["scores"], strict=True)
    ]


def detect_shard(
    manifest_url: str,
    shard: int,
    *,
    staging_root: str,
    engine: Engine,
    storage_options: StorageOptions = None,
    prefetch: int = DEFAULT_PREFETCH,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_seconds_per_image: float | None = DEFAULT_MAX_SECONDS_PER_IMAGE,
) -> str:
    """Stage 1 (GPU): one row per image with its quads and scores, or the reason it has none.

    An image over the time limit, or one the engine fails on (while it still reads a blank probe), gets
    its error here and no boxes, so it costs no crop or recognition time later.
    """
    _fence_staging(staging_root, storage_options)
    objects, info = manifest.shard_objects(manifest_url, shard, storage_options)
    seen = manifest.read_seen(info, storage_options)
    rows = []
    loaded = iter_loaded(
        objects, storage_options, prefetch=prefetch, max_pixels=max_pixels, skip_sha256=seen or None
    )
    for item in loaded:
        row = {
            "image_uri": item.obj.uri,
            "etag": item.obj.etag,
            "size": item.obj.size,
            "width": None,
            "height": None,
            "error": item.error,
            "det_seconds": 0.0,
            "sha256": item.sha256,
            "duplicate_of": seen[item.sha256] if item.skipped else None,
            **tables.photo_values(item.metadata),
            "quads": [],
            "scores": [],
        }
        if item.image is not None:
            begin = time.perf_counter()
            try:
                dets = engine.detect(item.image)
            except Exception as exc:
                if not engine_works(engine):
                    raise
                row["error"] = f"engine failed on this image: {type(exc).__name__}: {exc}"
                dets = []
            seconds = time.perf_counter() - begin
            row.update(width=item.image.shape[1], height=item.image.shape[0], det_seconds=seconds)
            row["error"] = row["error"] or over_time(item.decode_seconds + seconds, max_seconds_per_image)
            if row["error"] is None:
                row["quads"] = [[float(v) for point in d.quad for v in point] for d in dets]
                row["scores"] = [float(d.score) for d in dets]
            item.image = None
        rows.append(row)
    _fence_staging(staging_root, storage_options)
    url = stage_url(staging_root, "detections", shard)
    return _write_stage(
        url, tables.to_table(tables.DETECTIONS, rows), {_MODEL_META: dict(engine.model_info)}, storage_options
    )


def crop_shard(
    manifest_url: str,
    shard: int,
    *,
    staging_root: str,
    engine: Engine,
    storage_options: StorageOptions = None,
    prefetch: int = DEFAULT_PREFETCH,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> str:
    """Stage 2 (CPU): re-read the images that have boxes and store each padded crop as a lossless PNG.

    An image that cannot be read again (deleted since detection) is recorded in the file's metadata and
    becomes an `error` row at publish.
    """
    _fence_staging(staging_root, storage_options)
    manifest.shard_objects(manifest_url, shard, storage_options)  # the shard must exist in this manifest
    detections, meta = _read_stage(
        stage_url(staging_root, "detections", shard), tables.DETECTIONS, storage_options
    )
    todo = [r for r in detections.to_pylist() if r["error"] is None and r["quads"]]
    objects = [ObjectInfo(uri=r["image_uri"], size=r["size"], etag=r["etag"]) for r in todo]
    rows: list[dict] = []
    errors: dict[str, str] = {}
    loaded = iter_loaded(objects, storage_options, prefetch=prefetch, max_pixels=max_pixels)
    for row, item in zip(todo, loaded, strict=True):
        if item.image is None:
            errors[row["image_uri"]] = f"crop stage: {item.error}"
            continue
        if (item.image.shape[1], item.image.shape[0]) != (row["width"], row["height"]):
            errors[row["image_uri"]] = "crop stage: the object changed since detection"
            continue
        try:
            crops = engine.crop(item.image, _detections_of(row))
        except Exception as exc:
            if not engine_works(engine):
                raise
            errors[row["image_uri"]] = f"engine failed on this image: {type(exc).__name__}: {exc}"
            continue
        for index, crop in enumerate(crops):
            ok, png = cv2.imencode(".png", crop)
            if not ok:
                raise RuntimeError(f"PNG encoding of a crop of {row['image_uri']} failed")
            rows.append({"image_uri": row["image_uri"], "det_index": index, "png": png.tobytes()})
    meta[_ERRORS_META] = errors
    _fence_staging(staging_root, storage_options)
    url = stage_url(staging_root, "crops", shard)
    return _write_stage(url, tables.to_table(tables.CROPS, rows), meta, storage_options)


def _iter_crops(
    url: str, storage_options: StorageOptions, batch_rows: int
) -> Iterator[list[tuple[str, int, np.ndarray]]]:
    """The crops file in batches of decoded crops (memory stays bounded however many boxes a shard has)."""
    fs, path = objectstore.url_to_fs(url, storage_options)
    with fs.open(path, "rb") as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=batch_rows):
            out = []
            for uri, index, png in zip(
                *(batch.column(c).to_pylist() for c in ("image_uri", "det_index", "png")), strict=True
            ):
                crop = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
                if crop is None:
                    raise RuntimeError(f"staged crop {index} of {uri} is not a readable PNG")
                out.append((uri, index, crop))
            yield out


def recognize_shard(
    shard: int,
    *,
    staging_root: str,
    engine: Engine,
    storage_options: StorageOptions = None,
    batch_rows: int = DEFAULT_REC_CHUNK,
) -> str:
    """Stage 3 (GPU): read every crop, then assemble each image's words (this needs the engine's config).

    Writes `readings/part-S.parquet` (one row per box) and `words/part-S.parquet` (the final word rows);
    returns the readings URL.
    """
    tables.validate_shard(shard)
    _fence_staging(staging_root, storage_options)
    detections, det_meta = _read_stage(
        stage_url(staging_root, "detections", shard), tables.DETECTIONS, storage_options
    )
    crops_url = stage_url(staging_root, "crops", shard)
    crop_meta = _read_stage_meta(crops_url, storage_options)
    reading_rows = tables.TableBuilder(tables.READINGS)
    by_image: dict[str, dict[int, Reading]] = {}
    for batch in _iter_crops(crops_url, storage_options, batch_rows):
        begin = time.perf_counter()
        readings = engine.recognize([crop for _, _, crop in batch])
        share = (time.perf_counter() - begin) / max(len(batch), 1)
        for (uri, index, _), reading in zip(batch, readings, strict=True):
            by_image.setdefault(uri, {})[index] = reading
            reading_rows.extend(
                [
                    {
                        "image_uri": uri,
                        "det_index": index,
                        "text": reading.text,
                        "confidence": float(reading.confidence),
                        "char_positions": [float(v) for v in reading.char_positions],
                        "char_confidences": [float(v) for v in reading.char_confidences],
                        "flipped": bool(reading.flipped),
                        "rec_seconds": share,
                    }
                ]
            )
    word_rows = tables.TableBuilder(tables.WORDS)
    crop_errors = crop_meta.get(_ERRORS_META, {})
    for row in detections.to_pylist():
        if row["error"] is not None or row["image_uri"] in crop_errors or not row["quads"]:
            continue
        mine = by_image.get(row["image_uri"], {})
        if sorted(mine) != list(range(len(row["quads"]))):
            raise RuntimeError(
                f"{row['image_uri']}: {len(row['quads'])} boxes but readings for {sorted(mine)}"
            )
        readings = [mine[i] for i in range(len(row["quads"]))]
        words = engine.assemble((row["height"], row["width"]), _detections_of(row), readings)
        word_rows.extend(tables.word_rows(row["image_uri"], words, shard))
    # detection's models come from the detect stage (which may have run on another worker), the rest from here
    models = {k: v for k, v in engine.model_info.items() if not k.startswith("det_")}
    meta = {_MODEL_META: {**det_meta.get(_MODEL_META, {}), **models}, _ERRORS_META: crop_errors}
    _fence_staging(staging_root, storage_options)
    _write_stage(
        stage_url(staging_root, "words", shard),
        word_rows.table(),
        meta,
        storage_options,
    )
    url = stage_url(staging_root, "readings", shard)
    return _write_stage(url, reading_rows.table(), meta, storage_options)


def _read_stage_meta(url: str, storage_options: StorageOptions) -> dict[str, Any]:
    fs, path = objectstore.url_to_fs(url, storage_options)
    with fs.open(path, "rb") as fh:
        meta = pq.read_schema(fh).metadata or {}
    return {k.decode(): json.loads(v) for k, v in meta.items() if k.decode() in (_MODEL_META, _ERRORS_META)}


def publish_shard(
    manifest_url: str,
    shard: int,
    *,
    staging_root: str,
    output_root: str,
    dt: str,
    run_id: str,
    storage_options: StorageOptions = None,
) -> dict:
    """Stage 4 (CPU): the staged files become the shard's `images` and `words` part files."""
    start = time.perf_counter()
    tables.validate_dt(dt)
    owner = objectstore.canonical(manifest_url, storage_options)
    _fence(output_root, dt, owner, storage_options)
    objects, info = manifest.shard_objects(manifest_url, shard, storage_options)
    detections, _ = _read_stage(
        stage_url(staging_root, "detections", shard), tables.DETECTIONS, storage_options
    )
    readings, meta = _read_stage(stage_url(staging_root, "readings", shard), tables.READINGS, storage_options)
    words, _ = _read_stage(stage_url(staging_root, "words", shard), tables.WORDS, storage_options)
    if detections["image_uri"].to_pylist() != [o.uri for o in objects]:
        raise RuntimeError(f"staged detections of shard {shard} do not match the manifest {manifest_url}")
    model_info = meta.get(_MODEL_META, {})
    crop_errors = meta.get(_ERRORS_META, {})
    rec_seconds: dict[str, float] = {}
    for uri, seconds in zip(
        readings["image_uri"].to_pylist(), readings["rec_seconds"].to_pylist(), strict=True
    ):
        rec_seconds[uri] = rec_seconds.get(uri, 0.0) + seconds
    n_words: dict[str, int] = {}
    for uri in words["image_uri"].to_pylist():
        n_words[uri] = n_words.get(uri, 0) + 1
    processed_at = tables.utc_now()
    image_rows = []
    for row in detections.to_pylist():
        uri = row["image_uri"]
        error = row["error"] or crop_errors.get(uri)
        skipped = row["duplicate_of"] is not None  # detect_shard sets it only for skipped objects
        image_rows.append(
            tables.image_row(
                image_uri=uri,
                etag=row["etag"],
                size=row["size"],
                run_id=run_id,
                shard=shard,
                processed_at=processed_at,
                model_info=model_info,
                width=row["width"],
                height=row["height"],
                error=error,
                n_words=0 if error else n_words.get(uri, 0),
                det_seconds=row["det_seconds"],
                rec_seconds=rec_seconds.get(uri, 0.0),
                sha256=row["sha256"],
                duplicate_of=row["duplicate_of"],
                skipped=skipped and error is None,
                photo={name: row[name] for name in tables.PHOTO_COLUMNS},
            )
        )
    duplicates.mark_rows(image_rows)
    images = tables.to_table(tables.IMAGES, image_rows)
    words = words.replace_schema_metadata(tables.WORDS.metadata)
    return _write_shard(
        output_root, dt, shard, images, words, info.n_shards, storage_options, owner, start, "published"
    )


def finalize_partition(
    output_root: str, dt: str, *, staging_root: str | None = None, storage_options: StorageOptions = None
) -> int:
    """Once every shard of a run's dt is written: mark duplicates across its shards (`duplicates`).

    Call it before `remove_staging` with the run's `staging_root`: the rewrites are then fenced by the
    run's lease of the partition. Returns the number of `images` files rewritten.
    """
    tables.validate_dt(dt)
    fence = None
    if staging_root is not None:

        def fence() -> None:
            _fence_staging(staging_root, storage_options)

    return duplicates.mark_partition(output_root, dt, storage_options=storage_options, fence=fence)


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
