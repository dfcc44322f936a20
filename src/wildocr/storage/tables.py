"""Every pyarrow schema wildocr writes, the row builders and the Parquet settings: one place to look.

Output tables (hive-partitioned by `dt`, which lives only in the directory name, never inside the files, so
DuckDB, Spark, Athena and Trino all read the partition column without a name clash):

    ROOT/images/dt=YYYY-MM-DD/part-SSSSS.parquet    one row per source image (ok or error)
    ROOT/words/dt=YYYY-MM-DD/part-SSSSS.parquet     one row per recognised word

Types are chosen so that every engine reads them: signed ints only, float32/float64, booleans, strings,
timestamp[us, tz=UTC] (Parquet INT64 TIMESTAMP_MICROS, isAdjustedToUTC), flat columns (no nested types in
the output tables), no pandas metadata. The staging formats (manifest, seen, detections, crops, readings) are
internal to a run and may use nested types.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from wildocr.engine.exif import PhotoMetadata
from wildocr.engine.scripts import script_of
from wildocr.engine.types import Word
from wildocr.storage import objectstore
from wildocr.storage.objectstore import StorageOptions

# 2: images gained sha256, duplicate_of and the photo metadata columns, words gained script (all nullable,
# appended at the end: files of version 1 read beside version 2 by column name, the new columns null).
# 3: both gained `page` (1-based page of a PDF or multi-page TIFF, 1 for a photo; nullable and appended, so
# older files read beside it with page null: `coalesce(page, 1)`). (image_uri, page) is a row's key.
# 4: images gained verifier_sha256 (the word verifier that kept the words: a model folder's own or the stock
# one; nullable, appended: null in older files).
# 5: images gained engine_options (the flat options the engine ran with that differ from its defaults, as
# JSON: other options, other words; nullable, appended: null in older files).
SCHEMA_VERSION = "5"
TABLES = ("images", "words")
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_SKIPPED = "skipped"  # same bytes already read on an earlier date (content-incremental runs)
# What read the words (`OCREngine.model_info`): models, word verifier and options, in every images row.
PROVENANCE_KEYS = (
    "det_model",
    "det_sha256",
    "rec_model",
    "rec_sha256",
    "cls_model",
    "cls_sha256",
    "verifier_sha256",
    "engine_options",
)
ERROR_MAX_CHARS = 2000  # a traceback-sized message is not useful in a table cell

_POINT_COLUMNS = ("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4")  # tl, tr, br, bl (clockwise)
_BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
# What the photo says about itself (wildocr.engine.exif), in `images` and in the staged detections.
PHOTO_COLUMNS: tuple[str, ...] = (
    "taken_at",  # UTC when the offset is known, else local wall clock (flagged)
    "taken_at_is_local",
    "taken_at_offset_minutes",
    "gps_latitude",  # signed decimal degrees (WGS 84)
    "gps_longitude",
    "gps_altitude",  # metres, negative below sea level
    "camera_make",
    "camera_model",
    "orientation",  # EXIF Orientation applied when decoding (1..8)
    "metadata_warnings",  # why a metadata field is null despite a tag
)

# The schemas are built on first use (module __getattr__ below): the row builders, names and paths of this
# module need no pyarrow, and `wildocr ocr` writing JSON lines then starts without it (~33 MB, ~0.1 s).
_SCHEMA_NAMES = (
    "PHOTO_FIELDS",
    "IMAGES",
    "WORDS",
    "OUTPUT_SCHEMAS",
    "MANIFEST",
    "SEEN",
    "DETECTIONS",
    "CROPS",
    "READINGS",
)
if TYPE_CHECKING:
    import pyarrow as pa

    PHOTO_FIELDS: tuple[pa.Field, ...]
    IMAGES: pa.Schema
    WORDS: pa.Schema
    OUTPUT_SCHEMAS: dict[str, pa.Schema]
    MANIFEST: pa.Schema
    SEEN: pa.Schema
    DETECTIONS: pa.Schema
    CROPS: pa.Schema
    READINGS: pa.Schema


@cache
def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    _UTC_US = pa.timestamp("us", tz="UTC")

    def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
        return pa.schema(fields, metadata={"wildocr.table": name, "wildocr.schema_version": SCHEMA_VERSION})

    # PHOTO_COLUMNS, in order, with their types.
    photo_types = [_UTC_US, pa.bool_(), pa.int32(), pa.float64(), pa.float64(), pa.float64()]
    photo_types += [pa.string(), pa.string(), pa.int32(), pa.string()]
    PHOTO_FIELDS = tuple(pa.field(n, t) for n, t in zip(PHOTO_COLUMNS, photo_types, strict=True))

    IMAGES = _schema(
        "images",
        [
            pa.field("image_uri", pa.string(), nullable=False),
            pa.field("etag", pa.string(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("width", pa.int32()),  # null when the image could not be decoded
            pa.field("height", pa.int32()),
            pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
            pa.field("error", pa.string()),  # null when ok
            pa.field("n_words", pa.int32(), nullable=False),
            pa.field("det_seconds", pa.float64(), nullable=False),
            pa.field("rec_seconds", pa.float64(), nullable=False),
            pa.field("det_model", pa.string()),
            pa.field("det_sha256", pa.string()),
            pa.field("rec_model", pa.string()),
            pa.field("rec_sha256", pa.string()),
            pa.field("cls_model", pa.string()),  # the 0/180° classifier; null when the engine runs without it
            pa.field("cls_sha256", pa.string()),
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("processed_at", _UTC_US, nullable=False),
            pa.field("shard", pa.int32(), nullable=False),
            # schema version 2: nullable, appended
            pa.field("sha256", pa.string()),  # of the object's bytes; null when they could not be read
            pa.field("duplicate_of", pa.string()),  # the first copy of these bytes (see docs/tables.md)
            *PHOTO_FIELDS,
            pa.field("page", pa.int32()),  # schema version 3: 1-based page of the object (1 for a photo)
            pa.field("verifier_sha256", pa.string()),  # schema version 4: engine.verify.Verifier.sha256
            pa.field("engine_options", pa.string()),  # schema version 5: OCREngine.options_json
        ],
    )

    WORDS = _schema(
        "words",
        [
            pa.field("image_uri", pa.string(), nullable=False),
            pa.field("word_index", pa.int32(), nullable=False),  # reading order within the image, from 0
            pa.field("line_id", pa.int32(), nullable=False),  # words of one detected line share it
            pa.field("text", pa.string(), nullable=False),
            pa.field("confidence", pa.float32(), nullable=False),
            pa.field("det_score", pa.float32(), nullable=False),
            *[pa.field(c, pa.float32(), nullable=False) for c in _POINT_COLUMNS],
            *[pa.field(c, pa.float32(), nullable=False) for c in _BOX_COLUMNS],
            pa.field("shard", pa.int32(), nullable=False),
            pa.field("script", pa.string()),  # schema version 2: wildocr.engine.scripts.script_of(text)
            pa.field("page", pa.int32()),  # schema version 3: the page of `image_uri` the word is on
        ],
    )

    OUTPUT_SCHEMAS = {"images": IMAGES, "words": WORDS}

    # Staging (internal to one run) ------------------------------------------------------------------------

    MANIFEST = _schema(
        "manifest",
        [
            pa.field("image_uri", pa.string(), nullable=False),
            pa.field("etag", pa.string(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("position", pa.int64(), nullable=False),  # index in the URI-sorted listing
            pa.field("shard", pa.int32(), nullable=False),
            pa.field("error", pa.string()),  # known at listing (broken link, name not UTF-8): its error row
        ],
    )

    # The first copy of each content read on earlier dates (content-incremental runs, beside the manifest).
    SEEN = _schema(
        "seen",
        [
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("image_uri", pa.string(), nullable=False),
            pa.field("dt", pa.string(), nullable=False),
        ],
    )

    DETECTIONS = _schema(
        "detections",
        [
            pa.field("image_uri", pa.string(), nullable=False),
            pa.field("page", pa.int32(), nullable=False),
            pa.field("etag", pa.string(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("error", pa.string()),
            pa.field("det_seconds", pa.float64(), nullable=False),
            pa.field("sha256", pa.string()),
            pa.field("duplicate_of", pa.string()),  # set when skipped: bytes read on an earlier date
            *PHOTO_FIELDS,
            # float64 so that a staged crop sees exactly the quad the fused path saw
            pa.field("quads", pa.list_(pa.list_(pa.float64(), 8)), nullable=False),
            pa.field("scores", pa.list_(pa.float64()), nullable=False),
        ],
    )

    CROPS = _schema(
        "crops",
        [
            pa.field("image_uri", pa.string(), nullable=False),
            pa.field("page", pa.int32(), nullable=False),
            pa.field("det_index", pa.int32(), nullable=False),
            pa.field("png", pa.binary(), nullable=False),  # lossless, so recognition sees the exact pixels
        ],
    )

    READINGS = _schema(
        "readings",
        [
            pa.field("image_uri", pa.string(), nullable=False),
            pa.field("page", pa.int32(), nullable=False),
            pa.field("det_index", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("confidence", pa.float64(), nullable=False),
            pa.field("char_positions", pa.list_(pa.float64()), nullable=False),
            pa.field("char_confidences", pa.list_(pa.float64()), nullable=False),
            pa.field("flipped", pa.bool_(), nullable=False),
            pa.field("rec_seconds", pa.float64(), nullable=False),  # this crop's share of its batch
        ],
    )
    return {name: value for name, value in locals().items() if name in _SCHEMA_NAMES}


def __getattr__(name: str) -> Any:
    if name in _SCHEMA_NAMES:
        return _schemas()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Parquet settings per table: dictionary-encode only the columns that repeat.
_DICTIONARY_COLUMNS: dict[str, list[str]] = {
    "images": ["status", *PROVENANCE_KEYS, "run_id", "error", "camera_make", "camera_model"],
    "words": ["image_uri", "text", "script"],
    "manifest": ["image_uri"],
    "seen": [],
    "detections": [],
    "crops": ["image_uri"],
    "readings": ["image_uri"],
}
_ROW_GROUP_ROWS: dict[str, int] = {"images": 65_536, "words": 131_072, "crops": 2_048}
_DEFAULT_ROW_GROUP_ROWS = 65_536


# Paths -------------------------------------------------------------------------------------------------

_DT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def validate_dt(dt: str) -> str:
    """`dt` must be a real calendar date written YYYY-MM-DD: it becomes a directory name."""
    if not isinstance(dt, str) or not _DT_RE.match(dt):
        raise ValueError(f"dt must look like YYYY-MM-DD, got {dt!r}")
    try:
        _dt.date.fromisoformat(dt)
    except ValueError:
        raise ValueError(f"dt is not a calendar date: {dt!r}") from None
    return dt


def is_valid_dt(text: object) -> bool:
    """`validate_dt` as a test: for folder names, which may be anything."""
    try:
        validate_dt(text)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def validate_shard(shard: int) -> int:
    if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
        raise ValueError(f"shard must be an int >= 0, got {shard!r}")
    return shard


def part_name(shard: int) -> str:
    """File name of a shard's part: a pure function of the shard number, so a rerun replaces it."""
    return f"part-{validate_shard(shard):05d}.parquet"


def parse_part_name(name: str) -> int | None:
    """Shard number of a `part-SSSSS.parquet` name, None for anything else (temp files, foreign files)."""
    match = re.fullmatch(r"part-(\d{5,})\.parquet", name)
    return int(match.group(1)) if match else None


def partition_url(root: str, table: str, dt: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
    return f"{root.rstrip('/')}/{table}/dt={validate_dt(dt)}"


def part_url(root: str, table: str, dt: str, shard: int) -> str:
    """`ROOT/<table>/dt=<dt>/part-<shard>.parquet`, built only from validated parts."""
    return f"{partition_url(root, table, dt)}/{part_name(shard)}"


@dataclass(frozen=True, slots=True)
class PartFile:
    dt: str
    shard: int
    url: str


def part_files(
    root: str, table: str, dt: str | None = None, storage_options: StorageOptions = None
) -> list[PartFile]:
    """The part files of a table, of one dt partition when `dt` is given, sorted by (dt, shard).

    The one listing every reader uses: only `dt=<calendar date>/part-SSSSS.parquet` counts, so a stray
    folder (`dt=latest`), staging or a temporary file never becomes rows.
    """
    table_url = f"{root.rstrip('/')}/{table}"
    listed = partition_url(root, table, dt) if dt is not None else table_url
    prefix = objectstore.canonical(table_url, storage_options).rstrip("/") + "/"
    found = []
    for url in objectstore.list_files(listed, storage_options):
        rel = url[len(prefix) :].split("/") if url.startswith(prefix) else []
        if len(rel) != 2 or not rel[0].startswith("dt=") or not is_valid_dt(rel[0][3:]):
            continue
        shard = parse_part_name(rel[1])
        if shard is not None:
            found.append(PartFile(rel[0][3:], shard, url))
    return sorted(found, key=lambda p: (p.dt, p.shard))


# Rows --------------------------------------------------------------------------------------------------


def utc_now() -> _dt.datetime:
    """Now in UTC (Python datetimes carry microseconds, exactly what the tables store)."""
    return _dt.datetime.now(_dt.UTC)


def image_row(
    *,
    image_uri: str,
    etag: str,
    size: int,
    run_id: str,
    shard: int,
    processed_at: _dt.datetime,
    model_info: Mapping[str, str],
    width: int | None = None,
    height: int | None = None,
    error: str | None = None,
    n_words: int = 0,
    det_seconds: float = 0.0,
    rec_seconds: float = 0.0,
    sha256: str | None = None,
    duplicate_of: str | None = None,
    skipped: bool = False,
    photo: Mapping[str, Any] | None = None,
    page: int = 1,
) -> dict[str, Any]:
    """One `images` row, of one page of the object; status follows from `error` (and `skipped`) so they
    can never disagree.

    `photo` holds the PHOTO_COLUMNS values (`photo_values`); missing ones are null.
    """
    if error is not None and len(error) > ERROR_MAX_CHARS:
        error = error[: ERROR_MAX_CHARS - 3] + "..."
    if skipped and error is not None:
        raise ValueError("a skipped image has no error")
    status = STATUS_ERROR if error is not None else STATUS_SKIPPED if skipped else STATUS_OK
    photo = photo or {}
    return {
        "image_uri": image_uri,
        "etag": etag,
        "size": int(size),
        "width": None if width is None else int(width),
        "height": None if height is None else int(height),
        "status": status,
        "error": error,
        "n_words": int(n_words),
        "det_seconds": float(det_seconds),
        "rec_seconds": float(rec_seconds),
        **{k: model_info.get(k) or None for k in PROVENANCE_KEYS},
        "run_id": run_id,
        "processed_at": processed_at,
        "shard": validate_shard(shard),
        "sha256": sha256,
        "duplicate_of": duplicate_of,
        **{name: photo.get(name) for name in PHOTO_COLUMNS},
        "page": _page(page),
    }


def _page(page: int) -> int:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError(f"page must be an int >= 1, got {page!r}")
    return page


def photo_values(meta: PhotoMetadata | None) -> dict[str, Any]:
    """The PHOTO_COLUMNS values of one photo's metadata (all null without metadata)."""
    if meta is None:
        return dict.fromkeys(PHOTO_COLUMNS)
    values = {name: getattr(meta, name) for name in PHOTO_COLUMNS if name != "metadata_warnings"}
    values["metadata_warnings"] = meta.warning_text
    return values


def word_rows(image_uri: str, words: Sequence[Word], shard: int, page: int = 1) -> list[dict[str, Any]]:
    """The `words` rows of one page of an image, numbered in the engine's reading order."""
    validate_shard(shard)
    _page(page)
    rows = []
    for index, word in enumerate(words):
        row: dict[str, Any] = {
            "image_uri": image_uri,
            "word_index": index,
            "line_id": int(word.line_id),
            "text": word.text,
            "confidence": float(word.confidence),
            "det_score": float(word.det_score),
        }
        for i, (x, y) in enumerate(word.poly):
            row[f"x{i + 1}"] = float(x)
            row[f"y{i + 1}"] = float(y)
        row.update(zip(_BOX_COLUMNS, (float(v) for v in word.bbox), strict=True))
        row["shard"] = shard
        row["script"] = script_of(word.text)
        row["page"] = page
        rows.append(row)
    return rows


def to_table(schema: pa.Schema, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows to a table of exactly `schema` (missing or extra keys fail loudly)."""
    rows = list(rows)
    names = set(schema.names)
    for row in rows[:1]:
        if set(row) != names:
            raise ValueError(f"row keys {sorted(set(row) ^ names)} do not match schema {schema.metadata}")
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema)


class TableBuilder:
    """A table built row by row, held as Arrow record batches of `block` rows rather than dicts.

    A row as a Python dict costs ~10x its Arrow columns, and a long shard holds hundreds of thousands of
    word rows: kept as dicts they were most of a 1,500-photo shard's memory growth (docs/benchmarks.md).
    """

    def __init__(self, schema: pa.Schema, block: int = 4096) -> None:
        self.schema = schema
        self.block = block
        self._rows: list[Mapping[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= self.block:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._batches.extend(to_table(self.schema, self._rows).to_batches())
            self._rows = []

    def table(self) -> pa.Table:
        import pyarrow as pa

        self._flush()
        return pa.Table.from_batches(self._batches, schema=self.schema)


# Parquet -----------------------------------------------------------------------------------------------


def table_name(schema: pa.Schema) -> str:
    return (schema.metadata or {}).get(b"wildocr.table", b"").decode()


def parquet_bytes(table: pa.Table, *, extra_metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise a wildocr table with the project's Parquet settings (zstd, selective dictionaries)."""
    name = table_name(table.schema)
    if extra_metadata:
        metadata = dict(table.schema.metadata or {})
        metadata.update({k.encode(): v.encode() for k, v in extra_metadata.items()})
        table = table.replace_schema_metadata(metadata)
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=3,
        use_dictionary=_DICTIONARY_COLUMNS.get(name, True),
        row_group_size=_ROW_GROUP_ROWS.get(name, _DEFAULT_ROW_GROUP_ROWS),
        write_statistics=True,
    )
    return sink.getvalue()


def read_parquet_bytes(data: bytes, schema: pa.Schema | None = None) -> pa.Table:
    """Read a file written by `parquet_bytes`, checking it against the expected schema when given."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    if schema is not None and not table.schema.equals(schema, check_metadata=False):
        raise ValueError(f"unexpected schema for {table_name(schema)}:\n{table.schema}\nexpected:\n{schema}")
    return table


def read_columns(data: bytes, columns: Sequence[str]) -> pa.Table | None:
    """Some columns of a Parquet file, or None when the file lacks one (written by an older version)."""
    import pyarrow.parquet as pq

    names = set(pq.read_schema(io.BytesIO(data)).names)
    if not set(columns) <= names:
        return None
    return pq.read_table(io.BytesIO(data), columns=list(columns))


def file_metadata(data: bytes) -> dict[str, str]:
    """The key/value metadata of a Parquet file's schema, decoded."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(io.BytesIO(data)).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"ARROW:")}
