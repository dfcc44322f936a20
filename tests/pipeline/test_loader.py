"""`pipeline/loader.py`: prefetching in order within its bound, size limits applied before reading, and the
bytes (not the name) deciding the format."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from tests.helpers import _jpeg, blank_pdf, encode, encrypted_pdf, gradient, pdf_bytes, png_header, tiff_bytes
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


def test_documents_are_listed_and_become_one_item_per_page_in_order(tmp_path):
    """A PDF (named .pdf, or .jpg: the bytes decide) and a multi-page TIFF give one item per page between
    their neighbours; a document over the page limit gives its first pages and one error item for the
    rest; an encrypted PDF is one error item; bytes read before are skipped page by page."""
    (tmp_path / "a.png").write_bytes(encode(gradient(), "PNG"))
    (tmp_path / "b.pdf").write_bytes(pdf_bytes([gradient((64, 40)), gradient((80, 40))]))
    (tmp_path / "c.tif").write_bytes(tiff_bytes([gradient(), gradient(), gradient()]))
    (tmp_path / "d.jpg").write_bytes(blank_pdf(4))
    (tmp_path / "e.pdf").write_bytes(encrypted_pdf())
    (tmp_path / "notes.txt").write_bytes(b"%PDF-1.4 not listed: not a document name")
    listing = objectstore.list_images(str(tmp_path))
    assert [o.uri.rsplit("/", 1)[1] for o in listing.images] == ["a.png", "b.pdf", "c.tif", "d.jpg", "e.pdf"]
    items = list(loader.iter_loaded(listing.images, None, prefetch=2, max_pixels=10**6, max_pages=3))
    got = [(i.obj.uri.rsplit("/", 1)[1], i.page, i.error) for i in items]
    assert got == [
        ("a.png", 1, None),
        ("b.pdf", 1, None),
        ("b.pdf", 2, None),
        ("c.tif", 1, None),
        ("c.tif", 2, None),
        ("c.tif", 3, None),
        ("d.jpg", 1, None),
        ("d.jpg", 2, None),
        ("d.jpg", 3, None),
        ("d.jpg", 4, "refused: the document has 4 pages, over the page limit of 3: page 4 not read"),
        ("e.pdf", 1, "PDF is encrypted: it needs a password to be read"),
    ]
    assert [i.image.shape[1] for i in items[1:3]] == [64, 80]  # each page its own size
    assert len({i.sha256 for i in items[3:6]}) == 1 and all(i.later_pages is None for i in items)
    seen = {hashlib.sha256((tmp_path / "c.tif").read_bytes()).hexdigest()}
    skipped = list(
        loader.iter_loaded(listing.images[2:3], None, prefetch=1, max_pixels=10**6, skip_sha256=seen)
    )
    assert [(i.page, i.skipped, i.image) for i in skipped] == [
        (1, True, None),
        (2, True, None),
        (3, True, None),
    ]
    one = loader.load_image(listing.images[1], None, 10**6, page=2)  # a preview of one page
    assert one.page == 2 and one.image.shape[1] == 80 and one.later_pages is None
    assert loader.load_image(listing.images[1], None, 10**6, page=3).error == "no page 3: 2 page(s) read"
