"""`pipeline/loader.py`: prefetching in order within its bound, size limits applied before reading, and the
bytes (not the name) deciding the format."""

from __future__ import annotations

import os
import threading

import pytest

from tests.helpers import _jpeg, encode, gradient, png_header
from wildocr.pipeline import loader
from wildocr.storage import objectstore
from wildocr.storage.objectstore import ObjectInfo


def test_prefetch_keeps_order_and_bound():
    lock = threading.Lock()
    started = 0
    consumed = 0
    peak = 0

    def work(i: int) -> int:
        nonlocal started, peak
        with lock:
            started += 1
            peak = max(peak, started - consumed)
        return i * i

    out = []
    for value in loader.prefetched(range(50), work, prefetch=3):
        with lock:
            consumed += 1
        out.append(value)
    assert out == [i * i for i in range(50)]
    assert peak <= 3 + 1  # at most `prefetch` ahead of the item being handed out


def _bytes_read() -> int:
    with open("/proc/self/io") as fh:
        return int(next(line for line in fh if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_big_objects_are_refused_from_their_size_or_header_without_being_read(tmp_path):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as fh:  # 4 GiB + 1, sparse
        fh.write(_jpeg(8, 8))
        fh.truncate(4 * 2**30 + 1)
    limit = loader.DEFAULT_MAX_BYTES
    before = _bytes_read()
    # size from the listing ...
    listed = loader.load_image(ObjectInfo(str(huge), 4 * 2**30 + 1, "e"), None, 80_000_000)
    # ... and unknown (`wildocr ocr FILE`): the loader asks the store
    single = loader.load_image(ObjectInfo(str(huge), -1, ""), None, 80_000_000)
    for item in (listed, single):
        assert (
            item.image is None
            and item.error == f"refused: {4 * 2**30 + 1} bytes is over the limit of {limit} bytes"
        )
    # a 64 MiB object whose header declares 10000x10000: refused after reading its first bytes only
    bomb = tmp_path / "bomb.png"
    with open(bomb, "wb") as fh:
        fh.write(png_header(10_000, 10_000))
        fh.truncate(64 * 2**20)
    item = loader.load_image(ObjectInfo(str(bomb), -1, ""), None, 80_000_000)
    assert item.error == "refused: 10000x10000 = 100000000 pixels is over the limit of 80000000"
    assert _bytes_read() - before < 4 * loader.HEADER_BYTES
    # an object that grew past the limit after it was listed is cut off at the limit, not read whole
    grown = loader.load_image(ObjectInfo(str(bomb), 100, "e"), None, 80_000_000, max_bytes=2**20)
    assert grown.error == f"refused: more than the limit of {2**20} bytes (grew since listed)"
    assert _bytes_read() - before < 4 * loader.HEADER_BYTES + 2**20 + 4096


def test_phone_and_archive_files_are_listed_and_read_by_their_bytes(tmp_path):
    """AVIF in a file named .jpg is read as AVIF (the bytes decide); .avif, .heic and .jp2 are listed."""
    (tmp_path / "phone.jpg").write_bytes(encode(gradient(), "AVIF"))
    (tmp_path / "phone.avif").write_bytes(encode(gradient(), "AVIF"))
    (tmp_path / "phone.heic").write_bytes(encode(gradient(), "HEIF"))
    (tmp_path / "scan.jp2").write_bytes(encode(gradient(), "JPEG2000"))
    listing = objectstore.list_images(str(tmp_path))
    names = [o.uri.rsplit("/", 1)[1] for o in listing.images]
    assert names == ["phone.avif", "phone.heic", "phone.jpg", "scan.jp2"]
    for obj in listing.images:
        loaded = loader.load_image(obj, None, max_pixels=10_000)
        assert loaded.error is None, (obj.uri, loaded.error)
        assert loaded.image is not None and loaded.image.shape == (40, 64, 3)
