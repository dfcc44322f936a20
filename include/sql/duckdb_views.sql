-- wildocr tables as DuckDB views over the hive-partitioned Parquet output.
--
-- Set the output root first (a local folder, a downloaded copy of the bucket, or s3://... when the
-- httpfs extension is available and an S3 secret is configured), then run this file:
--
--   duckdb -c "SET VARIABLE wildocr_root = '/data/ocr'" -c ".read include/sql/duckdb_views.sql"
--
-- `dt` comes from the directory names (dt=YYYY-MM-DD) and is typed DATE; it is not stored in the files.
-- The globs only match part files: temporary files of interrupted writes end in .tmp, and the run
-- staging area ROOT/_staging is outside ROOT/images and ROOT/words.
-- union_by_name: partitions written before a column was added (schema version 1: no sha256, EXIF or
-- script columns) read beside newer ones, the missing columns NULL.

CREATE OR REPLACE VIEW images AS
SELECT *
FROM read_parquet(
    getvariable('wildocr_root') || '/images/*/*.parquet',
    hive_partitioning = true,
    hive_types = {'dt': DATE},
    union_by_name = true
);

CREATE OR REPLACE VIEW words AS
SELECT *
FROM read_parquet(
    getvariable('wildocr_root') || '/words/*/*.parquet',
    hive_partitioning = true,
    hive_types = {'dt': DATE},
    union_by_name = true
);
