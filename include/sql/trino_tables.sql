-- wildocr tables for Trino's Hive connector (catalog `hive`; any metastore: HMS or AWS Glue).
-- Replace s3://wildocr-lake/ocr with the output root. Partition columns come last in Trino's Hive DDL.
-- processed_at is Parquet TIMESTAMP(MICROS, adjusted to UTC): read as `timestamp` (UTC wall clock);
-- set the session property hive.timestamp_precision = 'MICROSECONDS' to keep the microseconds.
-- `page` (schema version 3) is null in files written before it: they hold photos, read it as
-- coalesce(page, 1).
-- `images.verifier_sha256` (schema version 4) is null in files written before it, and
-- `images.engine_options` (schema version 5) in files written before that.
-- Column types must match src/wildocr/storage/tables.py (tests/storage/test_tables.py checks it).

CREATE SCHEMA IF NOT EXISTS hive.wildocr WITH (location = 's3://wildocr-lake/ocr/');

CREATE TABLE IF NOT EXISTS hive.wildocr.images (
    image_uri varchar,
    etag varchar,
    size bigint,
    width integer,
    height integer,
    status varchar,
    error varchar,
    n_words integer,
    det_seconds double,
    rec_seconds double,
    det_model varchar,
    det_sha256 varchar,
    rec_model varchar,
    rec_sha256 varchar,
    cls_model varchar,
    cls_sha256 varchar,
    run_id varchar,
    processed_at timestamp,
    shard integer,
    sha256 varchar,
    duplicate_of varchar,
    taken_at timestamp,
    taken_at_is_local boolean,
    taken_at_offset_minutes integer,
    gps_latitude double,
    gps_longitude double,
    gps_altitude double,
    camera_make varchar,
    camera_model varchar,
    orientation integer,
    metadata_warnings varchar,
    page integer,
    verifier_sha256 varchar,
    engine_options varchar,
    dt varchar
)
WITH (
    external_location = 's3://wildocr-lake/ocr/images',
    format = 'PARQUET',
    partitioned_by = ARRAY['dt']
);

CREATE TABLE IF NOT EXISTS hive.wildocr.words (
    image_uri varchar,
    word_index integer,
    line_id integer,
    text varchar,
    confidence real,
    det_score real,
    x1 real,
    y1 real,
    x2 real,
    y2 real,
    x3 real,
    y3 real,
    x4 real,
    y4 real,
    x_min real,
    y_min real,
    x_max real,
    y_max real,
    shard integer,
    script varchar,
    page integer,
    dt varchar
)
WITH (
    external_location = 's3://wildocr-lake/ocr/words',
    format = 'PARQUET',
    partitioned_by = ARRAY['dt']
);

-- After each run (new dt directories): register the partitions.
CALL hive.system.sync_partition_metadata('wildocr', 'images', 'ADD');
CALL hive.system.sync_partition_metadata('wildocr', 'words', 'ADD');
