-- Example queries over the wildocr tables (run duckdb_views.sql first).
-- Each query starts with a "-- name:" line; tests/storage/test_tables.py runs every one against real output.
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

-- Photo metadata, content hashes and scripts (schema version 2; NULL in older partitions) -------------
-- Optional: SET VARIABLE wildocr_lat = 48.8583; SET VARIABLE wildocr_lon = 2.2945;
--           SET VARIABLE wildocr_radius_m = 500;   (used by words_near_point)

-- name: words_near_point
-- The words of photos taken within a radius of a point (GPS from EXIF; great-circle distance).
WITH point AS (
    SELECT coalesce(getvariable('wildocr_lat'), 48.8583)::DOUBLE AS lat,
           coalesce(getvariable('wildocr_lon'), 2.2945)::DOUBLE AS lon,
           coalesce(getvariable('wildocr_radius_m'), 500)::DOUBLE AS radius_m
), located AS (
    SELECT i.dt, i.image_uri, i.gps_latitude, i.gps_longitude, i.taken_at, p.radius_m,
           2 * 6371008.8 * asin(sqrt(
               pow(sin(radians(i.gps_latitude - p.lat) / 2), 2)
               + cos(radians(p.lat)) * cos(radians(i.gps_latitude))
                 * pow(sin(radians(i.gps_longitude - p.lon) / 2), 2)
           )) AS metres
    FROM images AS i, point AS p
    WHERE i.gps_latitude IS NOT NULL AND i.gps_longitude IS NOT NULL
)
SELECT l.dt, l.image_uri, round(l.metres, 1) AS metres, l.taken_at, w.word_index, w.text, w.script
FROM located AS l
JOIN words AS w USING (dt, image_uri)
WHERE l.metres <= l.radius_m
ORDER BY l.metres, l.image_uri, w.word_index;

-- name: words_per_camera
-- Photos and words per camera (EXIF make and model; NULL: the photo did not say).
SELECT i.camera_make, i.camera_model, count(DISTINCT i.image_uri) AS photos,
       sum(i.n_words) AS words, round(avg(i.n_words), 2) AS words_per_photo
FROM images AS i
WHERE i.status = 'ok'
GROUP BY ALL
ORDER BY photos DESC, camera_make NULLS LAST, camera_model NULLS LAST;

-- name: photos_per_local_hour
-- When photos were taken, by the hour of the camera's local clock (UTC times shifted by their offset).
SELECT hour((taken_at AT TIME ZONE 'UTC') + to_minutes(coalesce(taken_at_offset_minutes, 0))) AS local_hour,
       count(*) AS photos,
       count(*) FILTER (WHERE taken_at_is_local) AS without_utc_offset
FROM images
WHERE taken_at IS NOT NULL
GROUP BY local_hour
ORDER BY local_hour;

-- name: turned_photos
-- How photos were stored: the EXIF orientation applied before OCR (NULL: no usable tag).
SELECT orientation, count(*) AS photos
FROM images
WHERE status = 'ok'
GROUP BY orientation
ORDER BY orientation NULLS FIRST;

-- name: duplicates_per_day
-- Per day: photos, distinct contents (SHA-256), re-uploads of a photo of the same day (duplicate_of),
-- and photos not OCRed because their bytes were read on an earlier date (status 'skipped').
SELECT dt, count(*) AS photos, count(DISTINCT sha256) AS distinct_contents,
       count(*) FILTER (WHERE duplicate_of IS NOT NULL AND status <> 'skipped') AS duplicates,
       count(*) FILTER (WHERE status = 'skipped') AS skipped_seen_before
FROM images
GROUP BY dt
ORDER BY dt;

-- name: seen_before
-- Contents that arrived on more than one day, under any keys (join on sha256, not on the URI).
SELECT sha256, min(dt) AS first_dt, max(dt) AS last_dt, count(DISTINCT dt) AS days,
       count(*) AS copies, min(image_uri) AS first_uri
FROM images
WHERE sha256 IS NOT NULL
GROUP BY sha256
HAVING count(*) > 1
ORDER BY copies DESC, first_dt, sha256;

-- name: words_per_script
-- Words per writing system of their characters (Latin, Greek, Common = digits/punctuation only, ...).
SELECT script, count(*) AS words, count(DISTINCT image_uri) AS images,
       round(avg(confidence), 3) AS mean_confidence, min(text) AS example
FROM words
GROUP BY script
ORDER BY words DESC, script;

-- name: metadata_warnings
-- Photos whose metadata was there but not believable (the fields are NULL; the photo was still read).
SELECT dt, image_uri, status, metadata_warnings
FROM images
WHERE metadata_warnings IS NOT NULL
ORDER BY dt, image_uri;
