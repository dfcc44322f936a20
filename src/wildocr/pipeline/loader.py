"""One loader for every entry point: objects in, decoded pixels (or the reason there are none) out.

`wildocr ocr`, `wildocr run` and the Airflow tasks all fetch and decode through `iter_loaded`: a bounded
thread pool keeps at most `prefetch` objects fetched or decoded ahead of the consumer, in input order.

Before an object is read whole: an error the listing already found is its row; its size (from the listing,
else asked of the store) must be at most `max_bytes`; and an object over `HEADER_FIRST_ABOVE` bytes has its
first `HEADER_BYTES` read and its header checked (format, pixel limit) first. So an oversized or bomb-sized
object costs a listing entry or a few hundred KiB, never its whole size in memory.

A document (a PDF, a multi-page TIFF) becomes one `Loaded` per page, in page order: the pool decodes its
first page, the consumer's thread the others as it reaches them (`Loaded.later_pages`), so pages cost the
memory of one page each, whatever the document's length. At most `max_pages` pages are read; one more
item, with the error, stands for the rest.
"""

from __future__ import annotations

import errno
import hashlib
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from wildocr.engine.exif import PhotoMetadata
from wildocr.engine.imageio import (
    DEFAULT_MAX_PAGES,
    ImageDecodeError,
    Pages,
    check_header,
    open_pages,
)
from wildocr.storage import objectstore
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

# Per-object read failures that mean "this object", not "the store": they become error rows. A store
# outage (s3fs raises OSError(EIO) and the like) is none of these: it fails the task, which retries.
OBJECT_READ_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
OBJECT_READ_ERRNOS = frozenset({errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO, errno.EISDIR, errno.ENOTDIR})


def is_object_error(exc: OSError) -> bool:
    """Whether a read failure belongs to the object (a broken or looping link, a bad path), not the store."""
    return isinstance(exc, OBJECT_READ_ERRORS) or exc.errno in OBJECT_READ_ERRNOS


# Objects larger than this are refused unread: an uncompressed 8-bit RGB image at the default 80 MP pixel
# limit is 240 MB, and `prefetch` (4) objects can be in memory at once.
DEFAULT_MAX_BYTES = 256 * 2**20
HEADER_FIRST_ABOVE = 16 * 2**20  # objects above this have their header checked before the full read
HEADER_BYTES = 256 * 2**10  # enough for the header of every allowed format with ordinary metadata


@dataclass(slots=True)
class Loaded:
    """One manifest object after fetch + decode: the pixels, or the reason there are none.

    `sha256` is the hash of the bytes read (None when they could not be read); `metadata` the photo's
    EXIF (None when it did not decode). `skipped`: the hash was in `skip_sha256`, so it was not decoded.
    `page` is 1-based (1 for every single-page image); `later_pages` decodes the pages after the first of
    a document, one at a time (`iter_loaded` follows it).
    """

    obj: ObjectInfo
    image: np.ndarray | None
    error: str | None
    decode_seconds: float = 0.0
    sha256: str | None = None
    metadata: PhotoMetadata | None = None
    skipped: bool = False
    page: int = 1
    later_pages: Callable[[], Iterator[Loaded]] | None = None


def load_image(
    obj: ObjectInfo,
    storage_options: StorageOptions,
    max_pixels: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    skip_sha256: Container[str] | None = None,
    preview_side: int | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
    page: int | None = None,
) -> Loaded:
    """Fetch one object and decode its first page; every per-object failure is the returned `error`,
    never raised. The other pages of a document come from the result's `later_pages`.

    `preview_side` and `page` (that one page only, no `later_pages`) are for pictures shown to people
    (thumbnails, overlays), never for OCR: see `decode_photo`.
    """
    if obj.error is not None:
        return Loaded(obj, None, obj.error)
    try:
        size = obj.size if obj.size >= 0 else objectstore.object_size(obj.uri, storage_options)
        if size > max_bytes:
            return Loaded(obj, None, _too_big(size, max_bytes))
        if size > HEADER_FIRST_ABOVE:
            head = objectstore.read_bytes(obj.uri, storage_options, end=HEADER_BYTES)
            check_header(head, max_pixels=max_pixels)
        # bounded even if the object grew since it was listed
        data = objectstore.read_bytes(obj.uri, storage_options, end=max_bytes + 1)
    except ImageDecodeError as exc:
        return Loaded(obj, None, str(exc))
    except OSError as exc:
        if not is_object_error(exc):
            raise
        return Loaded(obj, None, f"read failed: {type(exc).__name__}: {exc}")
    if len(data) > max_bytes:
        return Loaded(obj, None, f"refused: more than the limit of {max_bytes} bytes (grew since listed)")
    sha256 = hashlib.sha256(data).hexdigest()
    begin = time.perf_counter()
    try:
        pages = open_pages(data, max_pixels=max_pixels, max_pages=max_pages)
    except ImageDecodeError as exc:
        if skip_sha256 is not None and sha256 in skip_sha256:
            return Loaded(obj, None, None, sha256=sha256, skipped=True)
        return Loaded(obj, None, str(exc), sha256=sha256)
    if skip_sha256 is not None and sha256 in skip_sha256:  # every page points at the copy read before
        first = Loaded(obj, None, None, sha256=sha256, skipped=True)
        later = [
            Loaded(obj, None, None, sha256=sha256, skipped=True, page=n) for n in range(2, pages.count + 1)
        ]
        first.later_pages = (lambda: iter(later)) if later else None
        return first
    if page is not None:
        if not 1 <= page <= pages.count:
            return Loaded(obj, None, f"no page {page}: {pages.count} page(s) read", sha256=sha256, page=page)
        return _load_page(obj, pages, page - 1, sha256, preview_side, time.perf_counter() - begin)
    first = _load_page(obj, pages, 0, sha256, preview_side, time.perf_counter() - begin)
    if pages.count > 1 or pages.over_limit:
        first.later_pages = lambda: _later_pages(obj, pages, sha256)
    return first


def _load_page(
    obj: ObjectInfo, pages: Pages, index: int, sha256: str, preview_side: int | None, opened: float = 0.0
) -> Loaded:
    """Page `index` of an opened object (its error, if it has one, is this page's alone)."""
    begin = time.perf_counter()
    try:
        photo = pages.decode(index, preview_side=preview_side)
    except ImageDecodeError as exc:
        return Loaded(obj, None, str(exc), sha256=sha256, page=index + 1)
    seconds = opened + time.perf_counter() - begin
    return Loaded(obj, photo.pixels, None, seconds, sha256, photo.metadata, page=index + 1)


def _later_pages(obj: ObjectInfo, pages: Pages, sha256: str) -> Iterator[Loaded]:
    """Pages 2.. of a document, decoded as they are reached; then the error of the pages over the limit."""
    for index in range(1, pages.count):
        yield _load_page(obj, pages, index, sha256, None)
    if pages.over_limit:
        yield Loaded(obj, None, pages.over_limit, sha256=sha256, page=pages.count + 1)


def _too_big(size: int, max_bytes: int) -> str:
    return f"refused: {size} bytes is over the limit of {max_bytes} bytes"


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
    max_bytes: int = DEFAULT_MAX_BYTES,
    skip_sha256: Container[str] | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> Iterator[Loaded]:
    """`load_image` over the objects, in order, one item per page; bytes that hash into `skip_sha256`
    are not decoded."""
    firsts = prefetched(
        objects,
        lambda o: load_image(o, storage_options, max_pixels, max_bytes, skip_sha256, max_pages=max_pages),
        prefetch=prefetch,
    )
    for first in firsts:
        later, first.later_pages = first.later_pages, None
        yield first
        if later is not None:
            yield from later()


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
