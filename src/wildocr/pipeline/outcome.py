"""The one image path: every entry point turns an object into an `ImageOutcome` through these steps.

    load (loader.py) -> detect -> crop -> recognize (the crops of many images at once) -> assemble

`wildocr ocr`, `wildocr run` and the fused Airflow task run the steps back to back (`read_objects`); the
staged tasks (pipeline/staged.py) run the same steps one per task, with Parquet files in between. Both end
in `image_row` / `word_rows`, the only code that turns an outcome into table rows.

The per-image rules live here once: an error from loading is the image's outcome; an image the engine
raises on (while it still reads a blank probe) gets "engine failed on this image" and the others go on; an
image whose decoding and detection took longer than the time limit gets an error and no words; bytes read
on an earlier date (`seen`) are skipped and point at that copy. An outcome is one page: a document (PDF,
multi-page TIFF) is as many outcomes as the loader gives pages, each with its `page`, and `(image_uri,
page)` is a row's key.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from wildocr.engine.imageio import DEFAULT_MAX_PAGES, DEFAULT_MAX_PIXELS
from wildocr.engine.types import Detection, Reading, Word
from wildocr.pipeline.loader import Loaded, chunked, iter_loaded
from wildocr.storage import tables
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 8  # images whose crops are recognised together
DEFAULT_PREFETCH = 4  # objects fetched and decoded ahead
# Decoding + detection of one image taking longer than this gives an error row instead of its words. The
# time is spent by then: this marks pathological images, it does not stop them (the pixel limit and the
# detector's fixed input size are what bound the work per image). None turns it off.
DEFAULT_MAX_SECONDS_PER_IMAGE = 300.0

T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    """What the pipeline needs from `wildocr.engine.OCREngine` (the stages, one by one)."""

    @property
    def model_info(self) -> dict[str, str]: ...
    def load(self, *stages: str) -> Any: ...
    def map_images(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]: ...
    def detect(self, image: np.ndarray) -> list[Detection]: ...
    def crop(self, image: np.ndarray, detections: Sequence[Detection]) -> list[np.ndarray]: ...
    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]: ...
    def assemble(
        self, image_size: tuple[int, int], detections: Sequence[Detection], readings: Sequence[Reading]
    ) -> list[Word]: ...


@dataclass(slots=True)
class ImageOutcome:
    """Everything the pipeline knows about one page of an object (1 for a photo): its words, or why it
    has none.

    `duplicate_of` set with no error means skipped: the same bytes were read on an earlier date.
    Within a shard, `duplicates.mark_rows` sets `duplicate_of` of later copies on the rows.
    """

    obj: ObjectInfo
    page: int = 1
    sha256: str | None = None
    photo: dict[str, Any] = field(default_factory=lambda: tables.photo_values(None))  # PHOTO_COLUMNS
    duplicate_of: str | None = None
    width: int | None = None
    height: int | None = None
    detections: list[Detection] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    det_seconds: float = 0.0
    rec_seconds: float = 0.0
    error: str | None = None

    @property
    def skipped(self) -> bool:
        return self.duplicate_of is not None and self.error is None

    @property
    def needs_reading(self) -> bool:
        """Detected without error and with boxes: its crops go to recognition."""
        return self.error is None and not self.skipped and bool(self.detections)


# The steps ------------------------------------------------------------------------------------------


def start(item: Loaded, seen: Mapping[str, str] | None = None) -> ImageOutcome:
    """The outcome of loading: an error, a skip (bytes in `seen`), or an image to detect."""
    outcome = ImageOutcome(
        item.obj,
        page=item.page,
        sha256=item.sha256,
        photo=tables.photo_values(item.metadata),
        error=item.error,
    )
    if item.skipped and seen is not None and item.sha256 is not None:
        outcome.duplicate_of = seen[item.sha256]
    return outcome


_PROBE = np.full((64, 64, 3), 255, np.uint8)


def _engine_still_works(step: Callable[[], object], what: str) -> bool:
    """Whether a step still succeeds on a blank probe: tells a broken engine from one bad image."""
    try:
        step()
    except Exception:
        log.exception("the engine fails on a blank probe image (%s): treating it as broken", what)
        return False
    return True


def _engine_failed(exc: Exception) -> str:
    return f"engine failed on this image: {type(exc).__name__}: {exc}"


def over_time(seconds: float, limit: float | None) -> str | None:
    """The error of an image whose decoding + detection took longer than `limit` seconds, else None."""
    if limit is None or seconds <= limit:
        return None
    return f"refused: decoding and detection took {seconds:.3f} s, over the per-image limit of {limit:g} s"


def detect(
    engine: Engine,
    outcome: ImageOutcome,
    image: np.ndarray,
    *,
    decode_seconds: float = 0.0,
    max_seconds: float | None = DEFAULT_MAX_SECONDS_PER_IMAGE,
    crop: bool = False,
) -> list[np.ndarray]:
    """Detect (and with `crop`, crop) one image into its outcome; returns the crops (none on error).

    An engine that raises on this image but still reads a blank probe costs this image its words; an
    engine that fails the probe too is broken, and the exception propagates (the task fails and retries).
    """
    outcome.height, outcome.width = int(image.shape[0]), int(image.shape[1])
    begin = time.perf_counter()
    crops: list[np.ndarray] = []
    try:
        detections = engine.detect(image)
        if crop:
            crops = engine.crop(image, detections)
    except Exception as exc:
        if not _engine_still_works(lambda: engine.detect(_PROBE), "detect"):
            raise
        log.warning("engine failed on one image of %dx%d: %r", image.shape[1], image.shape[0], exc)
        outcome.error, detections, crops = _engine_failed(exc), [], []
    outcome.det_seconds = time.perf_counter() - begin
    outcome.error = outcome.error or over_time(decode_seconds + outcome.det_seconds, max_seconds)
    if outcome.error is not None:
        return []
    outcome.detections = detections
    return crops


def crop(engine: Engine, outcome: ImageOutcome, image: np.ndarray) -> list[np.ndarray]:
    """The padded crops of an outcome's boxes (the staged crop task; the fused path crops in `detect`)."""
    try:
        return engine.crop(image, outcome.detections)
    except Exception as exc:
        if not _engine_still_works(lambda: engine.crop(_PROBE, []), "crop"):
            raise
        outcome.error = _engine_failed(exc)
        return []


def recognize(engine: Engine, crops_by_image: Sequence[Sequence[np.ndarray]]) -> list[list[Reading] | str]:
    """The readings of many images' crops, recognised together; an image the recognizer raises on alone
    gets an error message instead of readings (the others are read again without it)."""
    flat = [c for crops in crops_by_image for c in crops]
    try:
        readings = engine.recognize(flat) if flat else []
    except Exception as exc:
        log.warning("recognition failed on %d crops (%s); checking the engine", len(flat), exc)
        if not _engine_still_works(lambda: engine.recognize([_PROBE]), "recognize"):
            raise
        out: list[list[Reading] | str] = []
        for crops in crops_by_image:
            try:
                out.append(engine.recognize(crops) if crops else [])
            except Exception as one:
                out.append(_engine_failed(one))
        return out
    grouped: list[list[Reading] | str] = []
    offset = 0
    for crops in crops_by_image:
        grouped.append(readings[offset : offset + len(crops)])
        offset += len(crops)
    return grouped


def assemble(
    engine: Engine, outcome: ImageOutcome, readings: Sequence[Reading] | str, rec_seconds: float
) -> None:
    """Words from an outcome's boxes and their readings (or the recognizer's error for this image)."""
    outcome.rec_seconds = rec_seconds
    if isinstance(readings, str):
        outcome.error = readings
        return
    if outcome.error is None and outcome.detections:
        if len(readings) != len(outcome.detections):
            raise RuntimeError(
                f"{outcome.obj.uri} page {outcome.page}: {len(outcome.detections)} boxes "
                f"but {len(readings)} readings"
            )
        size = (outcome.height or 0, outcome.width or 0)
        outcome.words = engine.assemble(size, outcome.detections, readings)


@dataclass(slots=True)
class DetectedChunk:
    """A chunk after detection and cropping: its outcomes, the ones with pixels, and their crops."""

    outcomes: list[ImageOutcome]
    todo: list[ImageOutcome]
    crops: list[list[np.ndarray]]


def detect_chunk(
    engine: Engine,
    items: Sequence[Loaded],
    *,
    seen: Mapping[str, str] | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS_PER_IMAGE,
) -> DetectedChunk:
    """Detect and crop each loaded object of a chunk; the pixels are let go as soon as an image is cropped."""
    outcomes = [start(item, seen) for item in items]
    todo = [(o, item) for o, item in zip(outcomes, items, strict=True) if item.image is not None]

    def detect_one(pair: tuple[ImageOutcome, Loaded]) -> list[np.ndarray]:
        outcome, item = pair
        assert item.image is not None
        crops = detect(
            engine,
            outcome,
            item.image,
            decode_seconds=item.decode_seconds,
            max_seconds=max_seconds,
            crop=True,
        )
        item.image = None
        return crops

    crops = engine.map_images(detect_one, todo)
    return DetectedChunk(outcomes, [o for o, _ in todo], crops)


def recognize_chunk(engine: Engine, chunk: DetectedChunk) -> list[ImageOutcome]:
    """Recognise all the crops of a detected chunk at once and assemble each image's words."""
    begin = time.perf_counter()
    readings = recognize(engine, chunk.crops)
    seconds = time.perf_counter() - begin
    total = max(sum(map(len, chunk.crops)), 1)
    for outcome, image_crops, image_readings in zip(chunk.todo, chunk.crops, readings, strict=True):
        # Recognition ran for all images at once: charge each image its share of the crops.
        assemble(engine, outcome, image_readings, seconds * len(image_crops) / total)
    return chunk.outcomes


def read_chunk(
    engine: Engine,
    items: Sequence[Loaded],
    *,
    seen: Mapping[str, str] | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS_PER_IMAGE,
) -> list[ImageOutcome]:
    """Every step for a chunk of loaded objects: detect and crop each, recognise all their crops at once."""
    return recognize_chunk(engine, detect_chunk(engine, items, seen=seen, max_seconds=max_seconds))


def read_objects(
    engine: Engine,
    objects: Sequence[ObjectInfo],
    storage_options: StorageOptions,
    *,
    seen: Mapping[str, str] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    prefetch: int = DEFAULT_PREFETCH,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_seconds: float | None = DEFAULT_MAX_SECONDS_PER_IMAGE,
    keep_pixels: bool = False,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> Iterator[tuple[ImageOutcome, np.ndarray | None]]:
    """Load and read objects in order: (outcome, pixels when `keep_pixels` else None) for each page.

    Chunk k+1 is detected (on this thread) while chunk k is recognised (on one other thread): the
    detector's network and the recogniser's batches then share the cores, instead of one core idling
    through each stage's single-threaded parts. One detection at a time still, so one detector's
    activations; the crops of two chunks at most.

    Memory: at most `prefetch + 2 * chunk_size` decoded pages at a time (plus the crops of two chunks).
    """
    loaded = iter_loaded(
        objects,
        storage_options,
        prefetch=prefetch,
        max_pixels=max_pixels,
        skip_sha256=seen or None,
        max_pages=max_pages,
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wildocr-recognize") as pool:
        pending: tuple[Future[list[ImageOutcome]], list[np.ndarray | None]] | None = None
        for chunk in chunked(loaded, chunk_size):
            pixels = [item.image if keep_pixels else None for item in chunk]
            detected = detect_chunk(engine, chunk, seen=seen, max_seconds=max_seconds)
            if pending is not None:
                yield from zip(pending[0].result(), pending[1], strict=True)
            pending = (pool.submit(recognize_chunk, engine, detected), pixels)
        if pending is not None:
            yield from zip(pending[0].result(), pending[1], strict=True)


# Rows --------------------------------------------------------------------------------------------------


def image_row(
    outcome: ImageOutcome,
    *,
    run_id: str,
    shard: int,
    processed_at: _dt.datetime,
    model_info: Mapping[str, str],
) -> dict[str, Any]:
    """The `images` row of one outcome (`tables.IMAGES`)."""
    return tables.image_row(
        image_uri=outcome.obj.uri,
        page=outcome.page,
        etag=outcome.obj.etag,
        size=outcome.obj.size,
        run_id=run_id,
        shard=shard,
        processed_at=processed_at,
        model_info=model_info,
        width=outcome.width,
        height=outcome.height,
        error=outcome.error,
        n_words=0 if outcome.error else len(outcome.words),
        det_seconds=outcome.det_seconds,
        rec_seconds=outcome.rec_seconds,
        sha256=outcome.sha256,
        duplicate_of=outcome.duplicate_of,
        skipped=outcome.skipped,
        photo=outcome.photo,
    )


def word_rows(outcome: ImageOutcome, shard: int) -> list[dict[str, Any]]:
    """The `words` rows of one outcome (none when it has an error)."""
    return [] if outcome.error else tables.word_rows(outcome.obj.uri, outcome.words, shard, page=outcome.page)


def to_json(outcome: ImageOutcome) -> dict[str, Any]:
    """The JSON line `wildocr ocr` prints for one outcome: what its `images` and `words` rows would hold
    (the hash of the bytes and the photo's own metadata included, null fields left out)."""
    record: dict[str, Any] = {
        "image": outcome.obj.uri.rsplit("/", 1)[-1],
        "uri": outcome.obj.uri,
        "page": outcome.page,
    }
    if outcome.sha256 is not None:
        record["sha256"] = outcome.sha256
    photo = {
        name: value.isoformat() if isinstance(value, _dt.datetime) else value
        for name, value in outcome.photo.items()
        if value is not None
    }
    if photo:
        record["photo"] = photo
    if outcome.error is None:
        record.update(width=outcome.width, height=outcome.height, words=[w.to_json() for w in outcome.words])
    else:
        record.update(error=outcome.error, words=[])
    return record
