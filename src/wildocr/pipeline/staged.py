"""The staged path: the steps of pipeline/outcome.py cut at stage boundaries, one Airflow task each.

    detect (GPU) -> crop (CPU) -> recognize (GPU) -> publish (CPU)

Each stage reads the previous stage's Parquet file under the run's staging root and writes its own:
`detections` (one row per page of each object: its outcome so far, boxes included), `crops` (one lossless
PNG per box), `readings` (one row per box), all keyed by (image URI, page). Publish assembles the words and
writes the shard's part files, so a failed step retries alone, the GPU steps run on GPU workers, and the
rows equal the fused path's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wildocr.engine.imageio import DEFAULT_MAX_PAGES, DEFAULT_MAX_PIXELS
from wildocr.engine.types import Detection, Reading
from wildocr.pipeline import outcome, run
from wildocr.pipeline.loader import iter_loaded
from wildocr.pipeline.outcome import (
    DEFAULT_MAX_SECONDS_PER_IMAGE,
    DEFAULT_PREFETCH,
    Engine,
    ImageOutcome,
)
from wildocr.pipeline.outputs import ShardRows, ShardSummary
from wildocr.storage import manifest, objectstore, tables
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

log = logging.getLogger(__name__)

DEFAULT_REC_CHUNK = 256  # crops decoded and recognised at once by the recognize stage
_MODEL_META = "wildocr.model_info"
_ERRORS_META = "wildocr.errors"  # `_key(image URI, page)` -> error of the crop or recognize stage


def _key(uri: str, page: int) -> str:
    """One page of an object as a JSON object key (a URI never starts with digits and a space)."""
    return f"{page} {uri}"


# Stage files -------------------------------------------------------------------------------------------


def _write_stage(url: str, table: pa.Table, meta: dict[str, Any], storage_options: StorageOptions) -> str:
    extra = {key: json.dumps(value, sort_keys=True) for key, value in meta.items()}
    return objectstore.write_bytes_atomic(
        url, tables.parquet_bytes(table, extra_metadata=extra), storage_options
    )


def _stage_meta(data: bytes) -> dict[str, Any]:
    return {
        k: json.loads(v) for k, v in tables.file_metadata(data).items() if k in (_MODEL_META, _ERRORS_META)
    }


def _read_stage(
    url: str, schema: pa.Schema, storage_options: StorageOptions
) -> tuple[pa.Table, dict[str, Any]]:
    data = objectstore.read_bytes(url, storage_options)
    return tables.read_parquet_bytes(data, schema), _stage_meta(data)


def _read_stage_meta(url: str, storage_options: StorageOptions) -> dict[str, Any]:
    fs, path = objectstore.url_to_fs(url, storage_options)
    with fs.open(path, "rb") as fh:
        meta = pq.read_schema(fh).metadata or {}
    return {k.decode(): json.loads(v) for k, v in meta.items() if k.decode() in (_MODEL_META, _ERRORS_META)}


def _detection_row(result: ImageOutcome) -> dict[str, Any]:
    return {
        "image_uri": result.obj.uri,
        "page": result.page,
        "etag": result.obj.etag,
        "size": result.obj.size,
        "width": result.width,
        "height": result.height,
        "error": result.error,
        "det_seconds": result.det_seconds,
        "sha256": result.sha256,
        "duplicate_of": result.duplicate_of,
        **result.photo,
        "quads": [[float(v) for point in d.quad for v in point] for d in result.detections],
        "scores": [float(d.score) for d in result.detections],
    }


def _outcome_of(row: dict[str, Any]) -> ImageOutcome:
    """The outcome a `detections` row holds."""
    return ImageOutcome(
        ObjectInfo(uri=row["image_uri"], size=row["size"], etag=row["etag"]),
        page=row["page"],
        sha256=row["sha256"],
        photo={name: row[name] for name in tables.PHOTO_COLUMNS},
        duplicate_of=row["duplicate_of"],
        width=row["width"],
        height=row["height"],
        detections=[
            Detection(quad=((q[0], q[1]), (q[2], q[3]), (q[4], q[5]), (q[6], q[7])), score=s)
            for q, s in zip(row["quads"], row["scores"], strict=True)
        ],
        det_seconds=row["det_seconds"],
        error=row["error"],
    )


def _detections(staging_root: str, shard: int, storage_options: StorageOptions) -> tuple[pa.Table, dict]:
    return _read_stage(run.stage_url(staging_root, "detections", shard), tables.DETECTIONS, storage_options)


# The four stages ---------------------------------------------------------------------------------------


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
    max_pages: int = DEFAULT_MAX_PAGES,
) -> str:
    """Stage 1 (GPU): each page's outcome up to detection (its boxes, or why it has none)."""
    engine.load("detect")  # a bad model file fails the task before any image is read
    run.fence_staging(staging_root, storage_options)
    objects, info = manifest.shard_objects(manifest_url, shard, storage_options)
    seen = manifest.read_seen(info, storage_options)
    rows = []
    loaded = iter_loaded(
        objects,
        storage_options,
        prefetch=prefetch,
        max_pixels=max_pixels,
        skip_sha256=seen or None,
        max_pages=max_pages,
    )
    for item in loaded:
        result = outcome.start(item, seen)
        if item.image is not None:
            outcome.detect(
                engine,
                result,
                item.image,
                decode_seconds=item.decode_seconds,
                max_seconds=max_seconds_per_image,
            )
            item.image = None
        rows.append(_detection_row(result))
    run.fence_staging(staging_root, storage_options)
    return _write_stage(
        run.stage_url(staging_root, "detections", shard),
        tables.to_table(tables.DETECTIONS, rows),
        {_MODEL_META: dict(engine.model_info)},
        storage_options,
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
    max_pages: int = DEFAULT_MAX_PAGES,
) -> str:
    """Stage 2 (CPU): read the pages that have boxes again and store each padded crop as a lossless PNG.

    A page that cannot be read again (deleted or changed since detection) gets its error here, in the
    file's metadata, and becomes an `error` row at publish.
    """
    run.fence_staging(staging_root, storage_options)
    manifest.shard_objects(manifest_url, shard, storage_options)  # the shard must exist in this manifest
    detections, meta = _detections(staging_root, shard, storage_options)
    todo = {_key(r.obj.uri, r.page): r for r in map(_outcome_of, detections.to_pylist()) if r.needs_reading}
    objects = list({r.obj.uri: r.obj for r in todo.values()}.values())  # each object once, in order
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    loaded = iter_loaded(
        objects, storage_options, prefetch=prefetch, max_pixels=max_pixels, max_pages=max_pages
    )
    for item in loaded:
        key = _key(item.obj.uri, item.page)
        result = todo.pop(key, None)
        if result is None:  # a page without boxes, or the error row of the pages over the limit
            continue
        uri = result.obj.uri
        if item.image is None:
            errors[key] = f"crop stage: {item.error}"
            continue
        if (item.image.shape[1], item.image.shape[0]) != (result.width, result.height):
            errors[key] = "crop stage: the object changed since detection"
            continue
        crops = outcome.crop(engine, result, item.image)
        if result.error is not None:
            errors[key] = result.error
            continue
        for index, crop in enumerate(crops):
            ok, png = cv2.imencode(".png", crop)
            if not ok:
                raise RuntimeError(f"PNG encoding of a crop of {uri} page {result.page} failed")
            rows.append({"image_uri": uri, "page": result.page, "det_index": index, "png": png.tobytes()})
    for key in todo:  # pages the object no longer has (it changed since detection)
        errors[key] = "crop stage: the object changed since detection"
    meta[_ERRORS_META] = errors
    run.fence_staging(staging_root, storage_options)
    url = run.stage_url(staging_root, "crops", shard)
    return _write_stage(url, tables.to_table(tables.CROPS, rows), meta, storage_options)


def _iter_crops(
    url: str, storage_options: StorageOptions, batch_rows: int
) -> Iterator[list[tuple[str, int, int, np.ndarray]]]:
    """The crops file in batches of decoded crops (memory stays bounded however many boxes a shard has)."""
    fs, path = objectstore.url_to_fs(url, storage_options)
    with fs.open(path, "rb") as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=batch_rows):
            out = []
            columns = ("image_uri", "page", "det_index", "png")
            for uri, page, index, png in zip(*(batch.column(c).to_pylist() for c in columns), strict=True):
                crop = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
                if crop is None:
                    raise RuntimeError(f"staged crop {index} of {uri} page {page} is not a readable PNG")
                out.append((uri, page, index, crop))
            yield out


def recognize_shard(
    manifest_url: str,
    shard: int,
    *,
    staging_root: str,
    engine: Engine,
    storage_options: StorageOptions = None,
    batch_rows: int = DEFAULT_REC_CHUNK,
) -> str:
    """Stage 3 (GPU): every crop's reading, `batch_rows` crops at a time (one row per box)."""
    engine.load("recognize")
    run.fence_staging(staging_root, storage_options)
    manifest.shard_objects(manifest_url, shard, storage_options)  # the shard must exist in this manifest
    crops_url = run.stage_url(staging_root, "crops", shard)
    meta = _read_stage_meta(crops_url, storage_options)
    errors: dict[str, str] = dict(meta.get(_ERRORS_META, {}))
    rows = tables.TableBuilder(tables.READINGS)
    for batch in _iter_crops(crops_url, storage_options, batch_rows):
        by_page: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}
        for uri, page, index, crop in batch:
            by_page.setdefault((uri, page), []).append((index, crop))
        begin = time.perf_counter()
        readings = outcome.recognize(engine, [[c for _, c in crops] for crops in by_page.values()])
        share = (time.perf_counter() - begin) / max(len(batch), 1)
        for ((uri, page), crops), page_readings in zip(by_page.items(), readings, strict=True):
            if isinstance(page_readings, str):
                errors[_key(uri, page)] = page_readings
                continue
            rows.extend(
                _reading_row(uri, page, i, r, share) for (i, _), r in zip(crops, page_readings, strict=True)
            )
    # detection's models come from the detect stage (which may have run on another worker), the rest from here
    models = {k: v for k, v in engine.model_info.items() if not k.startswith("det_")}
    meta = {_MODEL_META: {**meta.get(_MODEL_META, {}), **models}, _ERRORS_META: errors}
    run.fence_staging(staging_root, storage_options)
    url = run.stage_url(staging_root, "readings", shard)
    return _write_stage(url, rows.table(), meta, storage_options)


def _reading_row(uri: str, page: int, index: int, reading: Reading, seconds: float) -> dict[str, Any]:
    return {
        "image_uri": uri,
        "page": page,
        "det_index": index,
        "text": reading.text,
        "confidence": float(reading.confidence),
        "char_positions": [float(v) for v in reading.char_positions],
        "char_confidences": [float(v) for v in reading.char_confidences],
        "flipped": bool(reading.flipped),
        "rec_seconds": seconds,
    }


def _readings_by_page(readings: pa.Table) -> dict[str, tuple[dict[int, Reading], float]]:
    out: dict[str, tuple[dict[int, Reading], float]] = {}
    for row in readings.to_pylist():
        key = _key(row["image_uri"], row["page"])
        mine, seconds = out.get(key, ({}, 0.0))
        mine[row["det_index"]] = Reading(
            text=row["text"],
            confidence=row["confidence"],
            char_positions=tuple(row["char_positions"]),
            char_confidences=tuple(row["char_confidences"]),
            flipped=row["flipped"],
        )
        out[key] = (mine, seconds + row["rec_seconds"])
    return out


def publish_shard(
    manifest_url: str,
    shard: int,
    *,
    staging_root: str,
    output_root: str,
    dt: str,
    run_id: str,
    engine: Engine,
    storage_options: StorageOptions = None,
) -> ShardSummary:
    """Stage 4 (CPU): the words of every image (`engine.assemble`, no model needed), then the shard's
    `images` and `words` part files."""
    started = time.perf_counter()
    tables.validate_dt(dt)
    owner = run.owner_of(manifest_url, storage_options)
    run.fence(output_root, dt, owner, storage_options)
    objects, info = manifest.shard_objects(manifest_url, shard, storage_options)
    detections, _ = _detections(staging_root, shard, storage_options)
    readings, meta = _read_stage(
        run.stage_url(staging_root, "readings", shard), tables.READINGS, storage_options
    )
    if list(dict.fromkeys(detections["image_uri"].to_pylist())) != [o.uri for o in objects]:
        raise RuntimeError(f"staged detections of shard {shard} do not match the manifest {manifest_url}")
    model_info = meta.get(_MODEL_META, {})
    errors = meta.get(_ERRORS_META, {})
    by_page = _readings_by_page(readings)
    rows = ShardRows(shard, run_id, model_info, processed_at=tables.utc_now())
    for row in detections.to_pylist():
        result = _outcome_of(row)
        if result.needs_reading:
            key = _key(result.obj.uri, result.page)
            mine, seconds = by_page.get(key, ({}, 0.0))
            if key in errors:
                outcome.assemble(engine, result, errors[key], seconds)
            else:
                if sorted(mine) != list(range(len(result.detections))):
                    raise RuntimeError(
                        f"{result.obj.uri} page {result.page}: {len(result.detections)} boxes "
                        f"but readings for {sorted(mine)}"
                    )
                outcome.assemble(engine, result, [mine[i] for i in sorted(mine)], seconds)
        rows.add(result)
    return rows.write(
        output_root,
        dt,
        n_shards=info.n_shards,
        storage_options=storage_options,
        owner=owner,
        started=started,
    )
