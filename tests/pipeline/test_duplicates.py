"""`pipeline/duplicates.py`: the duplicate rule (pure, on hand-built rows)."""

from __future__ import annotations

from wildocr.pipeline import duplicates


def test_duplicate_rule_first_uri_wins_and_skipped_rows_keep_their_pointer():
    rows = [
        {"image_uri": "s3://b/z.jpg", "sha256": "h1", "status": "ok", "duplicate_of": None},
        {"image_uri": "s3://b/a.jpg", "sha256": "h1", "status": "ok", "duplicate_of": None},
        {"image_uri": "s3://b/m.jpg", "sha256": "h1", "status": "error", "duplicate_of": None},
        {"image_uri": "s3://b/c.jpg", "sha256": "h2", "status": "ok", "duplicate_of": None},
        {"image_uri": "s3://b/d.jpg", "sha256": None, "status": "error", "duplicate_of": None},
        {"image_uri": "s3://b/e.jpg", "sha256": "h3", "status": "skipped", "duplicate_of": "s3://b/old.jpg"},
    ]
    duplicates.mark_rows(rows)
    assert [r["duplicate_of"] for r in rows] == [
        "s3://b/a.jpg",
        None,
        "s3://b/a.jpg",
        None,
        None,
        "s3://b/old.jpg",
    ]
