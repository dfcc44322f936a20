"""Derived tables computed from one `dt` partition: what a downstream (asset-triggered) DAG writes.

The example consumer DAG `wildocr_daily_words` calls `write_top_words` for the partition key of the
event that triggered it. Only that partition's part files are read (listed and fetched through fsspec, so
S3 needs no DuckDB extension); DuckDB does the aggregation over the Arrow table.

    ROOT/summaries/top_words/dt=YYYY-MM-DD/top_words.parquet     (replaced when the partition changes)

The schema lives here rather than in `tables.py` because it is not a wildocr output table: it is an
example of a consumer's own table, kept beside the code that writes it.
"""

from __future__ import annotations

import io

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from wildocr.storage import objectstore, tables
from wildocr.storage.objectstore import StorageOptions

TOP_WORDS = pa.schema(
    [
        pa.field("word", pa.string(), nullable=False),  # lower-cased
        pa.field("occurrences", pa.int64(), nullable=False),
        pa.field("images", pa.int64(), nullable=False),  # distinct images the word occurs in
        pa.field("mean_confidence", pa.float64(), nullable=False),
    ],
    metadata={"wildocr.table": "top_words", "wildocr.schema_version": "1"},
)

_TOP_WORDS_SQL = """
SELECT lower(text) AS word, count(*) AS occurrences, count(DISTINCT image_uri) AS images,
       avg(confidence)::DOUBLE AS mean_confidence
FROM words
GROUP BY lower(text)
ORDER BY occurrences DESC, word
LIMIT $limit
"""


def top_words_url(output_root: str, dt: str) -> str:
    return objectstore.join(
        output_root, "summaries", "top_words", f"dt={tables.validate_dt(dt)}", "top_words.parquet"
    )


def read_partition(output_root: str, table: str, dt: str, storage_options: StorageOptions = None) -> pa.Table:
    """All rows of one dt partition of `images` or `words` (part files only, never temporary files)."""
    parts = [part.url for part in tables.part_files(output_root, table, dt, storage_options)]
    schema = tables.OUTPUT_SCHEMAS[table]
    pieces = [pq.read_table(io.BytesIO(objectstore.read_bytes(url, storage_options))) for url in parts]
    return pa.concat_tables(pieces) if pieces else schema.empty_table()


def top_words(words: pa.Table, limit: int = 50) -> pa.Table:
    """The most frequent words (case-folded) of a words table, DuckDB over Arrow."""
    con = duckdb.connect()
    try:
        con.register("words", words)
        result = con.sql(_TOP_WORDS_SQL, params={"limit": limit}).to_arrow_table()
    finally:
        con.close()
    return result.cast(TOP_WORDS)


def write_top_words(
    output_root: str, dt: str, *, limit: int = 50, storage_options: StorageOptions = None
) -> dict[str, object]:
    """Compute and (re)write the top-words table of one partition; returns a small summary for XCom."""
    words = read_partition(output_root, "words", dt, storage_options)
    result = top_words(words, limit)
    sink = io.BytesIO()
    pq.write_table(result, sink, compression="zstd")
    url = objectstore.write_bytes_atomic(top_words_url(output_root, dt), sink.getvalue(), storage_options)
    return {
        "dt": dt,
        "words": words.num_rows,
        "rows": result.num_rows,
        "top": result.slice(0, 5).to_pylist(),
        "url": url,
    }
