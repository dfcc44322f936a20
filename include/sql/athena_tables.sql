-- wildocr tables for Amazon Athena (engine v3) or any Hive-metastore engine that takes Hive DDL.
-- Replace s3://wildocr-lake/ocr with the output root (the Airflow Variable wildocr_output_root).
-- `dt` is a partition key only (it is not stored inside the Parquet files).
-- Partition projection makes new days visible without MSCK REPAIR / ALTER TABLE ADD PARTITION; without
-- projection, run `MSCK REPAIR TABLE wildocr.images;` after each run instead.
-- `page` (schema version 3) is null in files written before it: they hold photos, read it as
-- coalesce(page, 1).
-- `images.verifier_sha256` (schema version 4) is null in files written before it, and
-- `images.engine_options` (schema version 5) in files written before that.
-- Column types must match src/wildocr/storage/tables.py (tests/storage/test_tables.py checks it).

CREATE DATABASE IF NOT EXISTS wildocr;

CREATE EXTERNAL TABLE IF NOT EXISTS wildocr.images (
    image_uri string,
    etag string,
    size bigint,
    width int,
    height int,
    status string,
    error string,
    n_words int,
    det_seconds double,
    rec_seconds double,
    det_model string,
    det_sha256 string,
    rec_model string,
    rec_sha256 string,
    cls_model string,
    cls_sha256 string,
    run_id string,
    processed_at timestamp,
    shard int,
    sha256 string,
    duplicate_of string,
    taken_at timestamp,
    taken_at_is_local boolean,
    taken_at_offset_minutes int,
    gps_latitude double,
    gps_longitude double,
    gps_altitude double,
    camera_make string,
    camera_model string,
    orientation int,
    metadata_warnings string,
    page int,
    verifier_sha256 string,
    engine_options string
)
PARTITIONED BY (dt string)
STORED AS PARQUET
LOCATION 's3://wildocr-lake/ocr/images/'
TBLPROPERTIES (
    'projection.enabled' = 'true',
    'projection.dt.type' = 'date',
    'projection.dt.format' = 'yyyy-MM-dd',
    'projection.dt.range' = '2024-01-01,NOW',
    'projection.dt.interval' = '1',
    'projection.dt.interval.unit' = 'DAYS',
    'storage.location.template' = 's3://wildocr-lake/ocr/images/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS wildocr.words (
    image_uri string,
    word_index int,
    line_id int,
    text string,
    confidence float,
    det_score float,
    x1 float,
    y1 float,
    x2 float,
    y2 float,
    x3 float,
    y3 float,
    x4 float,
    y4 float,
    x_min float,
    y_min float,
    x_max float,
    y_max float,
    shard int,
    script string,
    page int
)
PARTITIONED BY (dt string)
STORED AS PARQUET
LOCATION 's3://wildocr-lake/ocr/words/'
TBLPROPERTIES (
    'projection.enabled' = 'true',
    'projection.dt.type' = 'date',
    'projection.dt.format' = 'yyyy-MM-dd',
    'projection.dt.range' = '2024-01-01,NOW',
    'projection.dt.interval' = '1',
    'projection.dt.interval.unit' = 'DAYS',
    'storage.location.template' = 's3://wildocr-lake/ocr/words/dt=${dt}/'
);
