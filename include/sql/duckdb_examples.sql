-- Example queries over the wildocr tables (run duckdb_views.sql first).
-- Each query starts with a "-- name:" line; tests/test_tables_sql.py runs every one against real output.
-- Optional: SET VARIABLE wildocr_search = 'coffee';  (used by search_text; default 'open')

-- name: daily_summary
-- Images, errors and words per day.
SELECT
    i.dt,
    count(*) AS images,
    count(*) FILTER (WHERE i.status = 'ok') AS ok,
    count(*) FILTER (WHERE i.status = 'error') AS errors,
    round(count(*) FILTER (WHERE i.status = 'error') / count(*), 4) AS error_rate,
    sum(i.n_words) AS words,
    round(avg(i.n_words) FILTER (WHERE i.status = 'ok'), 2) AS words_per_ok_image
FROM images AS i
GROUP BY i.dt
ORDER BY i.dt;

-- name: errors
-- The images that could not be read, and why.
SELECT dt, image_uri, size, error, processed_at
FROM images
WHERE status = 'error'
ORDER BY dt DESC, image_uri;

-- name: image_text
-- The text of every image in reading order (words of a line joined by spaces, lines by ' | ').
WITH lines AS (
    SELECT dt, image_uri, line_id, min(word_index) AS first_word,
           string_agg(text, ' ' ORDER BY word_index) AS line_text
    FROM words
    GROUP BY dt, image_uri, line_id
)
SELECT dt, image_uri, string_agg(line_text, ' | ' ORDER BY first_word) AS text, count(*) AS lines
FROM lines
GROUP BY dt, image_uri
ORDER BY dt, image_uri;

-- name: top_words
-- The most frequent words (case-folded), with their mean recognition confidence.
SELECT lower(text) AS word, count(*) AS occurrences, count(DISTINCT image_uri) AS images,
       round(avg(confidence), 3) AS mean_confidence
FROM words
GROUP BY lower(text)
ORDER BY occurrences DESC, word
LIMIT 50;

-- name: search_text
-- Where a word occurs: image, position and size of the box.
SELECT w.dt, w.image_uri, w.text, w.confidence, w.x_min, w.y_min, w.x_max - w.x_min AS box_width,
       w.y_max - w.y_min AS box_height, i.width AS image_width, i.height AS image_height
FROM words AS w
JOIN images AS i USING (dt, image_uri)
WHERE lower(w.text) = lower(coalesce(getvariable('wildocr_search'), 'open'))
ORDER BY w.dt, w.image_uri, w.word_index;

-- name: low_confidence
-- A review queue: the least confident words first, flagged when recognition or detection was weak.
SELECT dt, image_uri, word_index, text, confidence, det_score,
       confidence < 0.8 OR det_score < 0.6 AS needs_review
FROM words
ORDER BY confidence, det_score
LIMIT 100;

-- name: latest_row_per_image
-- One row per source object across all days (an object re-read on a later day counts once).
SELECT image_uri, etag, dt, status, n_words, processed_at
FROM images
QUALIFY row_number() OVER (PARTITION BY image_uri ORDER BY dt DESC, processed_at DESC) = 1
ORDER BY image_uri;

-- name: models_and_speed
-- Which model files produced each day, and the time spent per image.
SELECT dt, det_model, left(det_sha256, 12) AS det_sha, rec_model, left(rec_sha256, 12) AS rec_sha,
       count(*) AS images, round(avg(det_seconds), 3) AS det_s_per_image,
       round(avg(rec_seconds), 3) AS rec_s_per_image, min(processed_at) AS first, max(processed_at) AS last
FROM images
WHERE status = 'ok'
GROUP BY ALL
ORDER BY dt, det_model, rec_model;
