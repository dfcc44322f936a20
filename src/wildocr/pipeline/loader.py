"""One loader for every entry point: objects in, decoded pixels (or the reason there are none) out.

`wildocr ocr`, `wildocr run` and the Airflow tasks all fetch and decode through `iter_loaded`: a bounded
thread pool keeps at most `prefetch` objects fetched or decoded ahead of the consumer, in input order.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from wildocr.engine.exif import PhotoMetadata
from wildocr.engine.imageio import ImageDecodeError, decode_photo
from wildocr.storage import objectstore
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

# Per-object read failures that mean "this object", not "the store": they become error rows.
OBJECT_READ_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError)


@dataclass(slots=True)
class Loaded:
    """One manifest object after fetch + decode: the pixels, or the reason there are none.

    `sha256` is the hash of the bytes read (None when they could not be read); `metadata` the photo's
    EXIF (None when it did not decode). `skipped`: the hash was in `skip_sha256`, so it was not decoded.
    """

    obj: ObjectInfo
    image: np.ndarray | None
    error: str | None
    decode_seconds: float = 0.0
    sha256: str | None = None
    metadata: PhotoMetadata | None = None
    skipped: bool = False


def load_image(
    obj: ObjectInfo,
    storage_options: StorageOptions,
    max_pixels: int,
    skip_sha256: Container[str] | None = None,
) -> Loaded:
    try:
        data = objectstore.read_bytes(obj.uri, storage_options)
    except OBJECT_READ_ERRORS as exc:
        return Loaded(obj, None, f"read failed: {type(exc).__name__}: {exc}")
    sha256 = hashlib.sha256(data).hexdigest()
    if skip_sha256 is not None and sha256 in skip_sha256:
        return Loaded(obj, None, None, sha256=sha256, skipped=True)
    begin = time.perf_counter()
    try:
        photo = decode_photo(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return Loaded(obj, None, str(exc), sha256=sha256)
    return Loaded(obj, photo.pixels, None, time.perf_counter() - begin, sha256, photo.metadata)


def prefetched(items: Iterable[Any], fn: Callable[[Any], Any], *, prefetch: int) -> Iterator[Any]:
    """`map(fn, items)` in order, with at most `prefetch` calls running or finished-but-unconsumed."""
    if prefetch < 1:
        raise ValueError("prefetch must be >= 1")
    it = iter(items)
    with ThreadPoolExecutor(max_workers=prefetch, thread_name_prefix="wildocr-fetch") as pool:
        pending = deque(pool.submit(fn, item) for _, item in zip(range(prefetch), it, strict=False))
        try:
            while pending:
                result = pending.popleft().result()
                for item in it:
                    pending.append(pool.submit(fn, item))
                    break
                yield result
        finally:
            for future in pending:
                future.cancel()


def iter_loaded(
    objects: Sequence[ObjectInfo],
    storage_options: StorageOptions,
    *,
    prefetch: int,
    max_pixels: int,
    skip_sha256: Container[str] | None = None,
) -> Iterator[Loaded]:
    """`load_image` over the objects, in order; bytes that hash into `skip_sha256` are not decoded."""
    return prefetched(
        objects, lambda o: load_image(o, storage_options, max_pixels, skip_sha256), prefetch=prefetch
    )


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
