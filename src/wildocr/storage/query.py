"""The read side of the output tables: partitions, a partition's images, one image's words, word search.

What the results browser (and anyone else who wants to look at the tables without writing SQL) needs,
answered by DuckDB over the Parquet files. Object stores are reached through fsspec (the filesystem is
registered with DuckDB), so no DuckDB extension is ever downloaded and the same `storage_options` as the
writers apply.

Every path is built here from the root and a validated `dt` (`tables.partition_url`), never from a caller's
string. Columns are read by name with `union_by_name`, so files that have more columns than this module
knows (a newer schema) or fewer (an older one, for optional columns) read fine. `page` (schema version 3)
reads as `coalesce(page, 1)`: files written before it hold photos, page 1 each.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import duckdb

from wildocr.engine.types import Word
from wildocr.storage import objectstore, tables
from wildocr.storage.objectstore import StorageOptions

IMAGE_KEY_CHARS = 16  # hex characters of sha256(image_uri): a short, stable id for URLs
_IMAGE_KEY_RE = re.compile(rf"^[0-9a-f]{{{IMAGE_KEY_CHARS}}}$")
_IMAGE_COLUMNS = (
    "image_uri",
    "etag",
    "size",
    "width",
    "height",
    "status",
    "error",
    "n_words",
    "shard",
    "run_id",
    "processed_at",
    "page",
)
_POINT_COLUMNS = ("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4")  # tl, tr, br, bl as in `tables.WORDS`
_BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
_WORD_COLUMNS = ("word_index", "line_id", "text", "confidence", "det_score", *_POINT_COLUMNS, *_BOX_COLUMNS)


def image_key(image_uri: str) -> str:
    """A short id for an image in URLs: the same URI always gives the same key, across reruns too."""
    return hashlib.sha256(image_uri.encode()).hexdigest()[:IMAGE_KEY_CHARS]


def validate_image_key(key: str) -> str:
    if not isinstance(key, str) or not _IMAGE_KEY_RE.match(key):
        raise ValueError(f"image key must be {IMAGE_KEY_CHARS} lowercase hex characters, got {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class PartitionSummary:
    """One `dt` partition of the `images` table, counted."""

    dt: str
    images: int
    ok: int
    errors: int
    words: int
    shards: int


@dataclass(frozen=True, slots=True)
class ImageEntry:
    """One row of the `images` table, with its URL key."""

    dt: str
    key: str
    image_uri: str
    etag: str
    size: int
    width: int | None
    height: int | None
    status: str
    error: str | None
    n_words: int
    shard: int
    run_id: str
    processed_at: Any
    page: int = 1  # of a PDF or multi-page TIFF; 1 for a photo (and for rows older than `page`)

    @property
    def name(self) -> str:
        """The last part of the URI: what a person calls the photo."""
        return self.image_uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def ok(self) -> bool:
        return self.status == tables.STATUS_OK


@dataclass(frozen=True, slots=True)
class SearchHit:
    """An image in which the searched text was read: the matching words and how sure the reader was."""

    dt: str
    key: str
    image_uri: str
    shard: int
    page: int
    words: tuple[str, ...]
    best_confidence: float
    exact: bool  # one of the words equals the query (case-insensitive), not only contains it


class TableReader:
    """Queries over the `images` and `words` tables under one output root (local or any fsspec store)."""

    def __init__(self, root: str, storage_options: StorageOptions = None) -> None:
        self.root = root.rstrip("/")
        self.storage_options = storage_options
        self._fs, self._root_path = objectstore.url_to_fs(self.root, storage_options)

    # --- files --------------------------------------------------------------------------------------------

    def _files(self, table: str, dt: str | None, shard: int | None = None) -> list[str]:
        """The table's part files (of one partition when `dt` is given; of one shard too), for DuckDB.

        Listed by `tables.part_files` and handed to DuckDB as a list, not as a glob, so a stray folder
        (`dt=latest`), staging or a temp file never breaks a read.
        """
        if dt is not None and shard is not None:
            fs, path = objectstore.url_to_fs(
                tables.part_url(self.root, table, dt, shard), self.storage_options
            )
            fs.invalidate_cache()
            found = fs.exists(path)
            return [path if objectstore.is_local(fs) else fs.unstrip_protocol(path)] if found else []
        parts = tables.part_files(self.root, table, dt, self.storage_options)
        return [self._duckdb_path(part.url) for part in parts]

    def _duckdb_path(self, url: str) -> str:
        """A part file as DuckDB opens it: a plain path locally, the URL through the registered fsspec."""
        return objectstore.url_to_fs(url, self.storage_options)[1] if objectstore.is_local(self._fs) else url

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        if not objectstore.is_local(self._fs):
            con.register_filesystem(self._fs)
        return con

    @staticmethod
    def _scan(columns: Sequence[str], *, has_page: bool = True) -> str:
        """A table expression over the part files bound to `$files`, with `dt` from the folder name;
        a `page` column reads as `coalesce(page, 1)` (`1` when no file has it: `has_page`)."""
        page = "coalesce(page, 1)" if has_page else "1"
        selected = [f"{page}::INTEGER AS page" if c == "page" else c for c in columns]
        return (
            f"(SELECT {', '.join(selected)}, dt FROM read_parquet($files, hive_partitioning = true, "
            "hive_types = {'dt': VARCHAR}, union_by_name = true))"
        )

    @staticmethod
    def _has_page(con: duckdb.DuckDBPyConnection, files: list[str]) -> bool:
        """Whether any of the files has `page` (schema version 3): older files read as page 1."""
        found = con.execute(
            "SELECT count(*) FROM parquet_schema($files) WHERE name = 'page'", {"files": files}
        )
        return bool(cast(tuple[int], found.fetchone())[0])

    # --- queries ------------------------------------------------------------------------------------------

    def partitions(self) -> list[PartitionSummary]:
        """Every `dt` partition of the `images` table, newest first, with its counts."""
        return self._summaries(None)

    def partition(self, dt: str) -> PartitionSummary | None:
        """The counts of one partition (only its files are read), None when it has no files."""
        found = self._summaries(tables.validate_dt(dt))
        return found[0] if found else None

    def _summaries(self, dt: str | None) -> list[PartitionSummary]:
        files = self._files("images", dt)
        if not files:
            return []
        sql = f"""
            SELECT dt, count(*), count(*) FILTER (status = 'ok'), count(*) FILTER (status <> 'ok'),
                   coalesce(sum(n_words), 0), count(DISTINCT shard)
            FROM {self._scan(("status", "n_words", "shard"))}
            GROUP BY dt ORDER BY dt DESC
        """
        rows = self._connect().execute(sql, {"files": files}).fetchall()
        return [
            PartitionSummary(dt, int(n), int(ok), int(err), int(w), int(s)) for dt, n, ok, err, w, s in rows
        ]

    def images(
        self,
        dt: str,
        *,
        shard: int | None = None,
        errors_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[ImageEntry], int]:
        """One page of a partition's images (ordered by URI) and how many match in all."""
        tables.validate_dt(dt)
        if shard is not None:
            tables.validate_shard(shard)
        files = self._files("images", dt)
        if not files:
            return [], 0
        params: dict[str, Any] = {"files": files}
        where = ["TRUE"]
        if shard is not None:
            where.append("shard = $shard")
            params["shard"] = shard
        if errors_only:
            where.append("status <> 'ok'")
        condition = " AND ".join(where)
        con = self._connect()
        scan = self._scan(_IMAGE_COLUMNS, has_page=self._has_page(con, files))
        (total,) = cast(
            tuple[int], con.execute(f"SELECT count(*) FROM {scan} WHERE {condition}", params).fetchone()
        )
        rel = con.execute(
            f"SELECT {', '.join(_IMAGE_COLUMNS)} FROM {scan} WHERE {condition} "
            "ORDER BY image_uri, page LIMIT $limit OFFSET $offset",
            {**params, "limit": int(limit), "offset": int(offset)},
        )
        return [_image_entry(dt, row) for row in rel.fetchall()], int(total)

    def image(self, dt: str, key: str, *, shard: int | None = None, page: int = 1) -> ImageEntry | None:
        """The image (its `page`) of partition `dt` whose URI has this key, or None; `shard` (a hint)
        reads one file."""
        tables.validate_dt(dt)
        validate_image_key(key)
        if shard is not None:
            found = self._image_in(dt, key, shard, page)  # a wrong hint (shards changed) falls back below
            if found is not None:
                return found
        return self._image_in(dt, key, None, page)

    def _image_in(self, dt: str, key: str, shard: int | None, page: int) -> ImageEntry | None:
        files = self._files("images", dt, None if shard is None else tables.validate_shard(shard))
        if not files:
            return None
        con = self._connect()
        # The key is a hash of the URI: compare in Python over the partition's URIs (one column, small).
        uris = con.execute(f"SELECT DISTINCT image_uri FROM {self._scan(('image_uri',))}", {"files": files})
        match = next((uri for (uri,) in uris.fetchall() if image_key(uri) == key), None)
        if match is None:
            return None
        scan = self._scan(_IMAGE_COLUMNS, has_page=self._has_page(con, files))
        row = con.execute(
            f"SELECT {', '.join(_IMAGE_COLUMNS)} FROM {scan} "
            "WHERE image_uri = $uri AND page = $page ORDER BY processed_at DESC LIMIT 1",
            {"files": files, "uri": match, "page": int(page)},
        ).fetchone()
        return None if row is None else _image_entry(dt, row)

    def words(self, dt: str, image_uri: str, *, shard: int | None = None, page: int = 1) -> list[Word]:
        """The words read in one image (its `page`) of partition `dt`, in reading order, as the engine's
        `Word`s.

        `shard` (the image's, from its `images` row: both parts of a shard are published together) makes
        this read one file instead of the partition.
        """
        tables.validate_dt(dt)
        files = self._files("words", dt, None if shard is None else tables.validate_shard(shard))
        if not files:
            return []
        con = self._connect()
        scan = self._scan(("image_uri", "page", *_WORD_COLUMNS), has_page=self._has_page(con, files))
        rel = con.execute(
            f"SELECT {', '.join(_WORD_COLUMNS)} FROM {scan} "
            "WHERE image_uri = $uri AND page = $page ORDER BY word_index",
            {"files": files, "uri": image_uri, "page": int(page)},
        )
        return [_word(dict(zip(_WORD_COLUMNS, row, strict=True))) for row in rel.fetchall()]

    def search(self, text: str, *, limit: int = 100, dt: str | None = None) -> list[SearchHit]:
        """Images whose words contain `text` (case-insensitive), across partitions; exact words first."""
        needle = text.strip()
        if not needle:
            return []
        if dt is not None:
            tables.validate_dt(dt)
        files = self._files("words", dt)
        if not files:
            return []
        con = self._connect()
        scan = self._scan(
            ("image_uri", "page", "shard", "text", "confidence"), has_page=self._has_page(con, files)
        )
        sql = f"""
            SELECT dt, image_uri, page, max(shard), list(DISTINCT text ORDER BY text), max(confidence),
                   bool_or(lower(text) = lower($needle)) AS exact
            FROM {scan}
            WHERE text ILIKE $pattern ESCAPE '\\'
            GROUP BY dt, image_uri, page
            ORDER BY exact DESC, dt DESC, image_uri, page
            LIMIT $limit
        """
        params = {
            "files": files,
            "needle": needle,
            "pattern": "%" + re.sub(r"([\\%_])", r"\\\1", needle) + "%",
            "limit": int(limit),
        }
        rows = con.execute(sql, params).fetchall()
        return [
            SearchHit(dt, image_key(uri), uri, int(shard), int(page), tuple(words), float(conf), bool(exact))
            for dt, uri, page, shard, words, conf, exact in rows
        ]


def _image_entry(dt: str, row: Sequence[Any]) -> ImageEntry:
    values = dict(zip(_IMAGE_COLUMNS, row, strict=True))
    return ImageEntry(dt=dt, key=image_key(values["image_uri"]), **values)


def _word(row: dict[str, Any]) -> Word:
    """A `words` row back into the engine's `Word` (what the overlay renderer draws)."""
    xs = [float(row[f"x{i}"]) for i in range(1, 5)]
    ys = [float(row[f"y{i}"]) for i in range(1, 5)]
    return Word(
        text=row["text"],
        confidence=float(row["confidence"]),
        det_score=float(row["det_score"]),
        line_id=int(row["line_id"]),
        poly=tuple(zip(xs, ys, strict=True)),  # type: ignore[arg-type]
        bbox=tuple(float(row[c]) for c in _BOX_COLUMNS),  # type: ignore[arg-type]
    )
