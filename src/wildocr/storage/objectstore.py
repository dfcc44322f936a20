"""Object storage through fsspec URLs: listing image objects, reading bytes, atomic whole-file writes.

Every URL form fsspec understands works (`file:///x`, plain `/x`, `s3://bucket/key`, `memory://x`);
`storage_options` go straight to the filesystem (for S3: key, secret, endpoint_url, client_kwargs ...).
There is no hand-written S3 client here: s3fs does the talking.

`file://` URLs follow RFC 8089 where it matters: `%` and the bytes of a file name that are not UTF-8 are
percent-encoded (`file:///data/caf%E9.jpg`), so every URL wildocr writes is valid text and opens its file
again; other characters are left as they are, so the URLs of ordinary names read as their paths. A plain
path (`/data/50%.jpg`) is never decoded. S3 keys are UTF-8 by definition and appear as they are.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit, urlunsplit

import fsspec
from fsspec.asyn import sync
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

S3_SCHEMES = ("s3", "s3a", "s3n")  # what Hadoop, Spark and Airflow's amazon provider call S3
# Names that are listed as images (the bytes then decide the format: `engine.imageio.open_pages`).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
    | {".avif", ".heic", ".heif"}  # phones
    | {".jp2", ".j2k", ".jpf", ".jpx"}  # JPEG 2000 (archives, scans)
    | {".pdf"}  # documents: every page is read (engine.imageio.open_pages)
)
S3_SINGLE_PUT_LIMIT = 5 * 2**30  # S3 refuses a single PUT above 5 GiB

StorageOptions = dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One listed object: its canonical URI, size and a version tag that changes when the bytes change.

    `error` is set when the listing already knows the object cannot be read (a broken symbolic link, a
    pipe named .jpg): it becomes the object's error row, nothing is read.
    `size` is -1 when unknown (a file named on the command line): the loader asks the store.
    """

    uri: str
    size: int
    etag: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """The image objects under a prefix (sorted by URI), how many other objects were skipped, and the
    sub-folders that could not be listed (their objects are unknown, so they are named, not guessed)."""

    images: list[ObjectInfo]
    skipped: int
    unreadable: list[str] = field(default_factory=list)


def file_url(path: str) -> str:
    """The `file://` URL of an absolute local path: `%` and bytes that are not UTF-8 (the file system's
    surrogate escapes) percent-encoded, everything else as it is. `url_to_fs` turns it back into the path."""
    out = []
    for ch in path:
        if ch == "%":
            out.append("%25")
        elif "\udc80" <= ch <= "\udcff":  # an undecodable byte, as os.fsdecode escapes it
            out.append(f"%{ord(ch) - 0xDC00:02X}")
        else:
            out.append(ch)
    return "file://" + "".join(out)


def valid_text(name: str) -> str:
    """`name` as valid UTF-8 text: undecodable bytes (surrogate escapes from the file system) as `\\xNN`."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def redact(url: str) -> str:
    """`url` without the password of a `scheme://user:password@host/...` form, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def url_to_fs(url: str, storage_options: StorageOptions = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and the protocol-less path for a URL (fsspec caches filesystem instances); a
    `file://` URL is percent-decoded into the path it names (`file_url` in reverse), a plain path is not."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if "%" in path and url[:7].lower() == "file://" and is_local(fs):
        path = os.fsdecode(unquote_to_bytes(path))
    return fs, path


def url_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URL of a path on `fs`: `file_url` for local files, fsspec's `protocol://path` elsewhere."""
    return file_url(path) if is_local(fs) else fs.unstrip_protocol(path)


def canonical(url: str, storage_options: StorageOptions = None) -> str:
    """The URL with its protocol spelled out (`/x` -> `file:///x`), as listings and writes return it."""
    fs, path = url_to_fs(url, storage_options)
    return url_of(fs, path)


def join(url: str, *parts: str) -> str:
    """Join URL parts with '/', whatever the protocol (os.path.join would break `s3://` on Windows)."""
    out = url.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def is_s3_url(url: str) -> bool:
    """Whether a URL names S3 or a look-alike (MinIO, Ceph ...): `s3://`, `s3a://` or `s3n://`."""
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in S3_SCHEMES


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    """S3 and its look-alikes (MinIO, Ceph ...): buckets, keys, no folders, conditional PUTs."""
    return bool(set(S3_SCHEMES) & set(_protocols(fs)))


def is_image_key(name: str) -> bool:
    """Case-insensitive extension check; the decoder has the final word on what really is an image."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _version_tag(info: dict[str, Any]) -> str:
    """ETag on object stores (quotes stripped); otherwise the modification time (ns) plus the size."""
    for key in ("ETag", "etag", "e_tag"):
        if info.get(key):
            return str(info[key]).strip('"')
    for key in ("mtime", "LastModified", "last_modified", "created", "updated"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            stamp = round(value.timestamp() * 1e9)
        elif isinstance(value, int | float):
            stamp = round(float(value) * 1e9)
        else:
            return f"{key}-{value}-{info.get('size', 0)}"
        return f"mtime-{stamp}-{info.get('size', 0)}"
    return f"size-{info.get('size', 0)}"


def list_images(prefix: str, storage_options: StorageOptions = None) -> Listing:
    """All image objects under `prefix` (recursively), sorted by URI; other objects are only counted.

    A prefix that does not exist is an error (FileNotFoundError), on every store: a mistyped prefix must
    never pass for an empty day, whose run would empty the day's published partition. An empty day is an
    existing empty folder (on S3: a folder marker, the zero-byte `prefix/` object "Create folder" makes).

    Local folders are walked by `_list_local`: symbolic links to files and folders are followed, broken
    links become objects with an `error`, names that are not UTF-8 are percent-encoded (`file_url`),
    unreadable sub-folders are named in `Listing.unreadable`. The listing cache is dropped first: s3fs
    would otherwise return a stale listing after writes made by another process (a previous task, an
    uploader).
    """
    fs, path = url_to_fs(prefix, storage_options)
    fs.invalidate_cache()
    if is_local(fs):
        return _list_local(fs, path, prefix)
    if is_object_store(fs):
        # No existence check first: s3fs's `exists` answers False for a bucket that does not exist (or a
        # typo in its name). `find` raises FileNotFoundError for a missing bucket and returns {} for a
        # prefix with no object under it, which is a missing prefix (folder markers are listed).
        try:
            found = fs.find(path, detail=True, withdirs=True)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"cannot list {prefix}: {exc}") from exc
        if not found:
            raise FileNotFoundError(f"cannot list {prefix}: no object under this prefix")
    elif not fs.exists(path):
        raise FileNotFoundError(f"cannot list {prefix}: it does not exist")
    else:
        found = {path: fs.info(path)} if fs.isfile(path) else fs.find(path, detail=True, withdirs=False)
    images: list[ObjectInfo] = []
    skipped = 0
    for name, info in found.items():
        if info.get("type", "file") != "file" or name.endswith("/"):
            continue
        if not is_image_key(name):
            skipped += 1
            continue
        images.append(ObjectInfo(url_of(fs, name), int(info.get("size") or 0), _version_tag(info)))
    images.sort(key=lambda o: o.uri)
    return Listing(images=images, skipped=skipped)


def _list_local(fs: fsspec.AbstractFileSystem, path: str, prefix: str) -> Listing:
    """A local folder walked with links followed (cycles cut), nothing left out without a trace."""
    try:
        top = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot list {prefix}: no such folder or file") from None
    if not stat.S_ISDIR(top.st_mode):
        if not is_image_key(path):
            return Listing(images=[], skipped=1)
        return Listing(images=[_local_object(fs, path, top)], skipped=0)
    images: list[ObjectInfo] = []
    unreadable: list[str] = []
    skipped = 0
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [(path, frozenset({(top.st_dev, top.st_ino)}))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            if folder == path:
                raise
            uri = url_of(fs, folder)
            log.warning("cannot list the folder %s (%s): its images are not in this run", uri, exc.strerror)
            unreadable.append(uri)
            continue
        for entry in entries:
            try:
                info = os.stat(entry.path)  # follows links
            except OSError as exc:  # a broken or looping link, or an entry we may not stat
                if is_image_key(entry.name):
                    reason = "broken symbolic link" if entry.is_symlink() else "cannot read its metadata"
                    uri = url_of(fs, entry.path)
                    images.append(ObjectInfo(uri, 0, "", f"{reason}: {exc.strerror}"))
                else:
                    skipped += 1
                continue
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in ancestors:  # a link back to a folder above: listing it again would never end
                    log.warning("not following %s: a link back to a folder above it", valid_text(entry.path))
                    continue
                stack.append((entry.path, ancestors | {key}))
            elif not is_image_key(entry.name):
                skipped += 1
            elif stat.S_ISREG(info.st_mode):
                images.append(_local_object(fs, entry.path, info))
            else:  # a pipe, socket or device named like a photo: reading it could block forever
                images.append(ObjectInfo(url_of(fs, entry.path), 0, "", "not a regular file"))
    images.sort(key=lambda o: o.uri)
    return Listing(images=images, skipped=skipped, unreadable=sorted(unreadable))


def _local_object(fs: fsspec.AbstractFileSystem, path: str, info: os.stat_result) -> ObjectInfo:
    tag = _version_tag({"mtime": info.st_mtime, "size": info.st_size})
    return ObjectInfo(url_of(fs, path), info.st_size, tag)


def read_bytes(
    uri: str, storage_options: StorageOptions = None, *, start: int | None = None, end: int | None = None
) -> bytes:
    """The object's bytes (`start`..`end`, end exclusive; the whole object by default); FileNotFoundError
    when it vanished since it was listed. On S3 the key goes to GetObject as a key: s3fs would parse a
    `?versionId=` inside it as a version."""
    s3 = _s3_object(uri, storage_options)
    if s3 is not None:
        fs, bucket, key = s3
        extra = {}
        if start is not None or end is not None:
            if end is not None and end <= (start or 0):
                return b""
            extra["Range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"

        async def get() -> bytes:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key, **extra)
            try:
                return await response["Body"].read()
            finally:
                response["Body"].close()

        try:
            return sync(fs.loop, get)
        except OSError as exc:  # 416: a range that starts at or past the end (S3 answers this for 0 bytes)
            if extra and exc.errno == errno.EINVAL and "range" in str(exc).lower():
                return b""
            raise
    fs, path = url_to_fs(uri, storage_options)
    if end is not None and isinstance(fs, LocalFileSystem):
        # fsspec reads `end - start` bytes in one call, for which Python allocates that many up front:
        # 256 MB for the loader's size limit, mapped and unmapped for every photo.
        end = min(end, fs.size(path))
    return fs.cat_file(path, start=start, end=end)


def object_size(uri: str, storage_options: StorageOptions = None) -> int:
    """The object's size in bytes (links followed); FileNotFoundError when it is not there."""
    s3 = _s3_object(uri, storage_options)
    if s3 is not None:
        fs, bucket, key = s3
        return int(fs.call_s3("head_object", Bucket=bucket, Key=key)["ContentLength"])
    fs, path = url_to_fs(uri, storage_options)
    return int(fs.size(path))


def _s3_object(uri: str, storage_options: StorageOptions) -> tuple[Any, str, str] | None:
    """(filesystem, bucket, key) of an `s3://` object URL, split by hand: the key is taken verbatim."""
    if not is_s3_url(uri):
        return None
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    fs, _ = url_to_fs(f"{scheme}://{bucket}", storage_options)
    return fs, bucket, key


def exists(url: str, storage_options: StorageOptions = None) -> bool:
    fs, path = url_to_fs(url, storage_options)
    fs.invalidate_cache(path)
    return fs.exists(path)


def write_bytes_atomic(url: str, data: bytes, storage_options: StorageOptions = None) -> str:
    """Replace the object at `url` with `data` so that readers see the old bytes or the new, never a mix.

    Local files: a hidden temporary file in the same directory, fsync, then `os.replace` (atomic on POSIX).
    Object stores: one PUT of the whole buffer (never multipart), which S3 makes visible atomically.
    Returns the canonical URL written.
    """
    fs, path = url_to_fs(url, storage_options)
    if is_local(fs):
        directory, name = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        _remove_stale_temps(directory, name)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            _write_file(tmp, data, "wb", url)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        _fsync_dir(directory)
    elif is_object_store(fs):
        if len(data) >= S3_SINGLE_PUT_LIMIT:
            raise ValueError(f"{url}: {len(data)} bytes is over the S3 single-PUT limit; use smaller shards")
        fs.pipe_file(path, data, chunksize=S3_SINGLE_PUT_LIMIT)
    else:
        fs.pipe_file(path, data)
    fs.invalidate_cache(path)
    return url_of(fs, path)


def create_exclusive(url: str, data: bytes, storage_options: StorageOptions = None) -> str:
    """Create the object at `url` with `data` only if nothing is there yet; FileExistsError otherwise.

    Local files: the bytes go to a temporary file that is then hard-linked to the name (`link` fails when
    the name exists, and readers never see a half-written file). S3: one PUT with `If-None-Match: *`
    (AWS S3 since 2024-08, MinIO, moto); a store that ignores that header would let both writers win, so
    it must not be used for concurrent runs. Other stores (memory://): check, then write (not atomic).
    """
    fs, path = url_to_fs(url, storage_options)
    if is_local(fs):
        directory, name = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            _write_file(tmp, data, "xb", url)
            try:
                os.link(tmp, path)
            except FileNotFoundError:
                # The holder of the name may clear temp files beside it (a writer killed half-way leaves
                # them): ours went while we lost the race, which is the same answer as losing it.
                if os.path.lexists(path):
                    raise FileExistsError(url) from None
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        _fsync_dir(directory)
    elif is_object_store(fs):
        fs.pipe_file(path, data, mode="create")  # s3fs turns 412 PreconditionFailed into FileExistsError
    else:
        fs.invalidate_cache(path)
        if fs.exists(path):
            raise FileExistsError(url)
        fs.pipe_file(path, data)
    fs.invalidate_cache(path)
    return url_of(fs, path)


def _write_file(tmp: str, data: bytes, mode: str, url: str) -> None:
    """Write and fsync a local temporary file. A full disk or quota names the file being written, since
    ENOSPC alone names no path and the operator must know which volume to free (docs/reliability.md)."""
    try:
        with open(tmp, mode) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.filename is None:
            raise OSError(exc.errno, os.strerror(exc.errno), redact(url)) from exc
        raise


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _remove_stale_temps(directory: str, name: str) -> None:
    """Temporary files left by a process killed mid-write (they never match `*.parquet`, but take space)."""
    prefix = f".{name}."
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.startswith(prefix) and entry.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, entry))


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def list_files(prefix: str, storage_options: StorageOptions = None) -> list[str]:
    """Canonical URLs of the files directly or indirectly under `prefix` ([] when it does not exist)."""
    fs, path = url_to_fs(prefix, storage_options)
    fs.invalidate_cache()
    if not fs.exists(path):
        return []
    return sorted(url_of(fs, p) for p in fs.find(path, withdirs=False))


def remove(urls: Iterable[str], storage_options: StorageOptions = None) -> int:
    """Delete the given files; missing ones are fine (a retried cleanup). Returns how many were removed."""
    removed = 0
    for url in urls:
        fs, path = url_to_fs(url, storage_options)
        try:
            fs.rm_file(path)
            removed += 1
        except FileNotFoundError:
            pass
        fs.invalidate_cache(path)
    return removed


def remove_tree(url: str, storage_options: StorageOptions = None, *, prune_parents: int = 0) -> None:
    """Delete everything under `url`; a missing tree is fine.

    `prune_parents` also removes up to that many parent directories when they are left empty (local file
    systems keep empty directories; object stores have none).
    """
    fs, path = url_to_fs(url, storage_options)
    fs.invalidate_cache()
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.invalidate_cache()
    if prune_parents:
        prune_empty_parents(url, prune_parents, storage_options)


def prune_empty_parents(url: str, levels: int, storage_options: StorageOptions = None) -> None:
    """Remove up to `levels` parent folders of `url` that are empty (local only: object stores have none)."""
    fs, path = url_to_fs(url, storage_options)
    if not is_local(fs):
        return
    parent = os.path.dirname(path.rstrip("/"))
    for _ in range(levels):
        try:
            os.rmdir(parent)
        except OSError:  # not empty (another run's staging, a lease) or already gone
            break
        parent = os.path.dirname(parent)
