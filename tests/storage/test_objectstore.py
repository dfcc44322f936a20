"""Object storage, manifests, table schemas and atomic writes: everything below the OCR engine."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import subprocess

import pytest

from tests.helpers import IMAGE_NAMES, SOURCE_NAMES, _fill_local
from wildocr.storage import objectstore

# Listing ----------------------------------------------------------------------------------------------


def test_list_local_filters_extensions_case_insensitively(tmp_path):
    _fill_local(tmp_path)
    listing = objectstore.list_images(str(tmp_path))
    assert [o.uri for o in listing.images] == sorted(f"file://{tmp_path}/{n}" for n in IMAGE_NAMES)
    assert listing.skipped == 2  # notes.txt, h.gif
    assert all(o.size == len(o.uri.rsplit("/", 1)[-1]) or o.size > 0 for o in listing.images)
    # file:// URLs and plain paths name the same objects
    assert objectstore.list_images(f"file://{tmp_path}/").images == listing.images


def test_phone_and_archive_extensions_are_listed(tmp_path):
    names = ["a.avif", "b.HEIC", "c.heif", "d.jp2", "e.J2K", "f.jpf", "g.jpx"]
    for name in [*names, "h.mov", "i.mp4"]:
        (tmp_path / name).write_bytes(b"x")
    listing = objectstore.list_images(str(tmp_path))
    assert [o.uri.rsplit("/", 1)[1] for o in listing.images] == names
    assert listing.skipped == 2


def test_local_version_changes_when_file_changes(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"one")
    os.utime(tmp_path / "x.jpg", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    before = objectstore.list_images(str(tmp_path)).images[0]
    assert before.etag == objectstore.list_images(str(tmp_path)).images[0].etag  # stable when unchanged
    os.utime(tmp_path / "x.jpg", ns=(1_700_000_001_000_000_000, 1_700_000_001_000_000_000))
    after = objectstore.list_images(str(tmp_path)).images[0]
    assert before.etag.startswith("mtime-") and after.etag != before.etag


def test_list_memory_fs():
    for name in SOURCE_NAMES:
        objectstore.write_bytes_atomic(f"memory://wildocr-list/{name}", b"x")
    listing = objectstore.list_images("memory://wildocr-list")
    assert [o.uri.rsplit("wildocr-list/", 1)[1] for o in listing.images] == sorted(IMAGE_NAMES)
    assert listing.skipped == 2
    assert objectstore.read_bytes(listing.images[0].uri) == b"x"


def test_list_s3_gives_etags(s3_bucket):
    fs = s3_bucket.fs
    for name in SOURCE_NAMES:
        fs.pipe_file(f"{s3_bucket.name}/in/{name}", name.encode())
    listing = objectstore.list_images(s3_bucket.url("in/"), s3_bucket.storage_options)
    assert [o.uri for o in listing.images] == [s3_bucket.url(f"in/{n}") for n in sorted(IMAGE_NAMES)]
    assert listing.skipped == 2
    for obj in listing.images:
        name = obj.uri.split("/in/", 1)[1]
        assert (
            obj.etag == hashlib.md5(name.encode()).hexdigest()
        )  # S3's ETag of a single PUT, quotes stripped
        assert obj.size == len(name)


def test_missing_prefix_is_an_error_and_an_empty_folder_an_empty_listing(tmp_path, s3_bucket):
    with pytest.raises(FileNotFoundError):
        objectstore.list_images(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        objectstore.list_images(s3_bucket.url("nothing/here/"), s3_bucket.storage_options)
    assert objectstore.list_images(str(tmp_path)).images == []
    s3_bucket.fs.pipe_file(f"{s3_bucket.name}/empty/", b"")  # a folder marker
    assert objectstore.list_images(s3_bucket.url("empty/"), s3_bucket.storage_options).images == []


# Atomic writes ----------------------------------------------------------------------------------------


def test_local_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    url = str(tmp_path / "t" / "part-00000.parquet")
    (tmp_path / "t").mkdir()
    stale = tmp_path / "t" / ".part-00000.parquet.deadbeef.tmp"  # left by a writer killed mid-write
    stale.write_bytes(b"half")
    assert objectstore.write_bytes_atomic(url, b"old") == f"file://{url}"
    objectstore.write_bytes_atomic(url, b"new")
    assert (tmp_path / "t" / "part-00000.parquet").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path / "t")) == ["part-00000.parquet"]


def test_local_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "part-00001.parquet"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(objectstore.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        objectstore.write_bytes_atomic(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["part-00001.parquet"]


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte (root only: mount); unmounted afterwards."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("mounting a tmpfs needs root (CI=true: .ci/run runs as root)", pytrace=False)
        pytest.skip("mounting a tmpfs for a full disk needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:  # root without CAP_SYS_ADMIN, e.g. an unprivileged container
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr.strip()} (CI=true)", pytrace=False)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        with (disk / "filler").open("wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("write", [objectstore.write_bytes_atomic, objectstore.create_exclusive])
def test_a_full_disk_names_the_file_and_leaves_nothing_half_written(full_disk, write):
    target = full_disk / "images" / "part-00000.parquet"
    (full_disk / "images").mkdir()
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{target}'")) as err:
        write(str(target), os.urandom(256 * 1024))
    assert err.value.errno == errno.ENOSPC
    assert os.listdir(full_disk / "images") == []


def test_s3_write_is_one_put(s3_bucket):
    data = os.urandom(3 * 2**20)
    url = s3_bucket.url("out/x.parquet")
    assert objectstore.write_bytes_atomic(url, data, s3_bucket.storage_options) == url
    info = s3_bucket.fs.info(url, refresh=True)
    # A multipart upload's ETag is "<md5 of md5s>-<parts>"; a single PUT's is the md5 of the bytes.
    assert info["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert objectstore.read_bytes(url, s3_bucket.storage_options) == data


def test_a_missing_prefix_fails_on_every_store_and_an_empty_folder_is_an_empty_day(s3_bucket, tmp_path):
    (tmp_path / "empty").mkdir()
    assert objectstore.list_images(str(tmp_path / "empty")).images == []
    with pytest.raises(FileNotFoundError, match=r"cannot list .*/typo: no such folder"):
        objectstore.list_images(str(tmp_path / "typo"))

    options = s3_bucket.storage_options
    s3_bucket.fs.pipe_file(f"{s3_bucket.name}/in/2026-11-23/a.jpg", b"x")
    s3_bucket.fs.pipe_file(f"{s3_bucket.name}/in/2026-11-24/", b"")  # a folder marker: an empty day
    assert objectstore.list_images(s3_bucket.url("in/2026-11-24/"), options).images == []
    with pytest.raises(FileNotFoundError, match="no object under this prefix"):
        objectstore.list_images(s3_bucket.url("in/2026-11-25/"), options)

    import fsspec

    fsspec.filesystem("memory").pipe("/wildocr-missing/in/a.jpg", b"x")
    assert len(objectstore.list_images("memory://wildocr-missing/in").images) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        objectstore.list_images("memory://wildocr-missing/typo")


def test_logged_urls_lose_their_password():
    assert objectstore.redact("sftp://bob:pa55@host/photos/") == "sftp://bob:***@host/photos/"
    assert objectstore.redact("s3://bucket/x?versionId=abc.jpg") == "s3://bucket/x?versionId=abc.jpg"
    assert objectstore.redact("/plain/path/") == "/plain/path/"


def test_local_urls_percent_encode_percent_and_bytes_that_are_not_utf8_and_open_their_file(tmp_path):
    raw_names = [b"caf\xe9.jpg", "50%41 off é.jpg".encode(), b"plain.jpg"]
    for i, raw in enumerate(raw_names):
        with open(os.fsencode(tmp_path) + b"/" + raw, "wb") as fh:
            fh.write(bytes([i]) * 10)
    listed = {o.uri.rsplit("/", 1)[1]: o for o in objectstore.list_images(str(tmp_path)).images}
    # ASCII escapes only where needed: an ordinary name's URL still reads as its path
    assert sorted(listed) == ["50%2541 off é.jpg", "caf%E9.jpg", "plain.jpg"]
    for i, raw in enumerate(raw_names):
        obj = listed[objectstore.file_url("/" + os.fsdecode(raw)).rsplit("/", 1)[1]]
        assert obj.error is None
        assert objectstore.read_bytes(obj.uri) == bytes([i]) * 10
        assert objectstore.object_size(obj.uri) == 10
        assert obj.uri.encode("utf-8")  # valid text: it can go into Parquet and JSON as it is


def test_a_plain_path_is_never_percent_decoded(tmp_path):
    (tmp_path / "a%41.jpg").write_bytes(b"literal")
    (tmp_path / "aA.jpg").write_bytes(b"decoded")
    assert objectstore.read_bytes(str(tmp_path / "a%41.jpg")) == b"literal"
    assert objectstore.read_bytes(f"file://{tmp_path}/a%41.jpg") == b"decoded"  # RFC 8089: %41 is A
    assert objectstore.canonical(str(tmp_path / "a%41.jpg")) == f"file://{tmp_path}/a%2541.jpg"


def test_reading_a_small_local_object_under_a_large_limit_allocates_its_size_only(tmp_path) -> None:
    """The loader reads every object with `end` at its 256 MB limit; on a local file that must not make
    Python allocate the limit for each photo."""
    import tracemalloc

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(50_000))
    tracemalloc.start()
    try:
        data = objectstore.read_bytes(str(photo), end=256 * 2**20 + 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data == photo.read_bytes()
    assert peak < 2**20
    assert objectstore.read_bytes(str(photo), start=10, end=20) == photo.read_bytes()[10:20]
