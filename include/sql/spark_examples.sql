-- Example queries over the wildocr tables in Spark SQL (run spark_tables.sql first).
-- Each query starts with a "-- name:" line; tests/e2e/test_spark_tables.py runs every one with PySpark against
-- real output and compares it with the DuckDB example of the same name (duckdb_examples.sql).

-- name: daily_summary
-- Images, errors and words per day.
SELECT
    dt,
    count(*) AS images,
    count(*) FILTER (WHERE status = 'ok') AS ok,
    count(*) FILTER (WHERE status = 'error') AS errors,
    round(count(*) FILTER (WHERE status = 'error') / count(*), 4) AS error_rate,
    sum(n_words) AS words
FROM wildocr.images
GROUP BY dt
ORDER BY dt;

-- name: errors
-- The images that could not be read, and why.
SELECT dt, image_uri, size, error, processed_at
FROM wildocr.images
WHERE status = 'error'
ORDER BY dt DESC, image_uri;

-- name: top_words
-- The most frequent words (case-folded), with their mean recognition confidence.
SELECT lower(text) AS word, count(*) AS occurrences, count(DISTINCT image_uri) AS images,
       round(avg(confidence), 3) AS mean_confidence
FROM wildocr.words
GROUP BY lower(text)
ORDER BY occurrences DESC, word
LIMIT 50;

-- name: image_text
-- The text of every image in reading order (words of a line joined by spaces, lines by ' | ').
WITH lines AS (
    SELECT dt, image_uri, line_id, min(word_index) AS first_word,
           concat_ws(' ', transform(array_sort(collect_list(struct(word_index, text))), x -> x.text))
               AS line_text
    FROM wildocr.words
    GROUP BY dt, image_uri, line_id
)
SELECT dt, image_uri,
       concat_ws(' | ', transform(array_sort(collect_list(struct(first_word, line_text))), x -> x.line_text))
           AS text,
       count(*) AS lines
FROM lines
GROUP BY dt, image_uri
ORDER BY dt, image_uri;

-- name: latest_row_per_image
-- One row per source object across all days (an object re-read on a later day counts once).
SELECT image_uri, etag, dt, status, n_words, processed_at
FROM (
    SELECT *, row_number() OVER (PARTITION BY image_uri ORDER BY dt DESC, processed_at DESC) AS rn
    FROM wildocr.images
)
WHERE rn = 1
ORDER BY image_uri;
