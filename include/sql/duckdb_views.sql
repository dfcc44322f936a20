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
-- script columns) read beside newer ones, the missing columns NULL. Files older than schema version 3
-- have no `page`: they hold photos, so the views read it as coalesce(page, 1). The empty branch joined
-- BY NAME gives the views a `page` column even where no file has one yet (a lake of older files only).

CREATE OR REPLACE VIEW images AS
SELECT * REPLACE (coalesce(page, 1)::INTEGER AS page)
FROM (
    SELECT *
    FROM read_parquet(
        getvariable('wildocr_root') || '/images/*/*.parquet',
        hive_partitioning = true,
        hive_types = {'dt': DATE},
        union_by_name = true
    )
    UNION ALL BY NAME
    SELECT NULL::INTEGER AS page WHERE false
);

CREATE OR REPLACE VIEW words AS
SELECT * REPLACE (coalesce(page, 1)::INTEGER AS page)
FROM (
    SELECT *
    FROM read_parquet(
        getvariable('wildocr_root') || '/words/*/*.parquet',
        hive_partitioning = true,
        hive_types = {'dt': DATE},
        union_by_name = true
    )
    UNION ALL BY NAME
    SELECT NULL::INTEGER AS page WHERE false
);
