"""One loader for every entry point: objects in, decoded pixels (or the reason there are none) out.

`wildocr ocr`, `wildocr run` and the Airflow tasks all fetch and decode through `iter_loaded`: a bounded
thread pool keeps at most `prefetch` objects fetched or decoded ahead of the consumer, in input order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from wildocr.engine.imageio import ImageDecodeError, decode_image
from wildocr.storage import objectstore
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

# Per-object read failures that mean "this object", not "the store": they become error rows.
OBJECT_READ_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError)


@dataclass(slots=True)
class Loaded:
    """One manifest object after fetch + decode: the pixels, or the reason there are none."""

    obj: ObjectInfo
    image: np.ndarray | None
    error: str | None
    decode_seconds: float = 0.0


def load_image(obj: ObjectInfo, storage_options: StorageOptions, max_pixels: int) -> Loaded:
    try:
        data = objectstore.read_bytes(obj.uri, storage_options)
    except OBJECT_READ_ERRORS as exc:
        return Loaded(obj, None, f"read failed: {type(exc).__name__}: {exc}")
    begin = time.perf_counter()
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return Loaded(obj, None, str(exc))
    return Loaded(obj, image, None, time.perf_counter() - begin)


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
    objects: Sequence[ObjectInfo], storage_options: StorageOptions, *, prefetch: int, max_pixels: int
) -> Iterator[Loaded]:
    return prefetched(objects, lambda o: load_image(o, storage_options, max_pixels), prefetch=prefetch)


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
