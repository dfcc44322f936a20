-- wildocr tables for Spark SQL (3.x+, Hive metastore or Glue catalog). Use s3a:// on Hadoop-style
-- setups (EMR accepts s3://). Replace s3a://wildocr-lake/ocr with the output root.
-- Without a catalog, PySpark reads the same layout directly and discovers `dt` from the directories:
--   spark.read.parquet("s3a://wildocr-lake/ocr/words")      (dt typed DATE by partition inference;
--   set spark.sql.sources.partitionColumnTypeInference.enabled=false to keep it a string)
-- `page` (schema version 3) is null in files written before it: they hold photos, read it as
-- coalesce(page, 1).
-- `images.verifier_sha256` (schema version 4) is null in files written before it, and
-- `images.engine_options` (schema version 5) in files written before that.
-- Column types must match src/wildocr/storage/tables.py (tests/storage/test_tables.py checks it).

CREATE DATABASE IF NOT EXISTS wildocr;

CREATE TABLE IF NOT EXISTS wildocr.images (
    image_uri STRING,
    etag STRING,
    size BIGINT,
    width INT,
    height INT,
    status STRING,
    error STRING,
    n_words INT,
    det_seconds DOUBLE,
    rec_seconds DOUBLE,
    det_model STRING,
    det_sha256 STRING,
    rec_model STRING,
    rec_sha256 STRING,
    cls_model STRING,
    cls_sha256 STRING,
    run_id STRING,
    processed_at TIMESTAMP,
    shard INT,
    sha256 STRING,
    duplicate_of STRING,
    taken_at TIMESTAMP,
    taken_at_is_local BOOLEAN,
    taken_at_offset_minutes INT,
    gps_latitude DOUBLE,
    gps_longitude DOUBLE,
    gps_altitude DOUBLE,
    camera_make STRING,
    camera_model STRING,
    orientation INT,
    metadata_warnings STRING,
    page INT,
    verifier_sha256 STRING,
    engine_options STRING,
    dt STRING
)
USING PARQUET
PARTITIONED BY (dt)
LOCATION 's3a://wildocr-lake/ocr/images';

CREATE TABLE IF NOT EXISTS wildocr.words (
    image_uri STRING,
    word_index INT,
    line_id INT,
    text STRING,
    confidence FLOAT,
    det_score FLOAT,
    x1 FLOAT,
    y1 FLOAT,
    x2 FLOAT,
    y2 FLOAT,
    x3 FLOAT,
    y3 FLOAT,
    x4 FLOAT,
    y4 FLOAT,
    x_min FLOAT,
    y_min FLOAT,
    x_max FLOAT,
    y_max FLOAT,
    shard INT,
    script STRING,
    page INT,
    dt STRING
)
USING PARQUET
PARTITIONED BY (dt)
LOCATION 's3a://wildocr-lake/ocr/words';

-- After each run (new dt directories): register the partitions.
MSCK REPAIR TABLE wildocr.images;
MSCK REPAIR TABLE wildocr.words;
