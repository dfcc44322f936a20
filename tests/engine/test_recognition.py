"""The engine's pure pieces on hand-built inputs: CTC decoding, bucketing, crop geometry, word splitting."""

from __future__ import annotations

import numpy as np
import pytest

from wildocr.engine.recognition import (
    REC_HEIGHT,
    RecognizerConfig,
    bucket_width,
    ctc_greedy_decode,
    normalise_crop,
    plan_batches,
)

CHARSET = ["<blank>", "a", "b", "c", " "]


def test_ctc_collapses_repeats_and_drops_blank() -> None:
    # a a _ a b b _ _ c  ->  "aabc": a blank between two a's keeps both
    idx = np.array([1, 1, 0, 1, 2, 2, 0, 0, 3])
    prob = np.array([0.9, 0.8, 0.99, 0.7, 0.6, 0.5, 0.99, 0.99, 0.4])
    reading = ctc_greedy_decode(idx, prob, CHARSET)
    assert reading.text == "aabc"
    # kept steps are the first of each run: 0 (0.9), 3 (0.7), 4 (0.6), 8 (0.4)
    assert reading.confidence == pytest.approx(np.mean([0.9, 0.7, 0.6, 0.4]))
    assert reading.char_positions == pytest.approx([0.5 / 9, 3.5 / 9, 4.5 / 9, 8.5 / 9])


def test_ctc_all_blank_is_empty_with_zero_confidence() -> None:
    reading = ctc_greedy_decode(np.zeros(6, dtype=int), np.ones(6), CHARSET)
    assert reading.text == "" and reading.confidence == 0.0


def test_ctc_positions_are_relative_to_content_not_padding() -> None:
    idx = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # 'a' at step 0 of 10; content fills half the input
    reading = ctc_greedy_decode(idx, np.ones(10), CHARSET, content_fraction=0.5)
    assert reading.char_positions == pytest.approx([0.5 / 10 / 0.5])


WIDE = ["<blank>", "a", "b", "$", "4", "5", " "]  # the space is the charset's last label, as in PP-OCR


def test_a_weak_space_between_two_words_reads_as_a_space() -> None:
    """Tightly set words ("PREMIUMGIFTS"): blank wins the arg-max in the gap, the space still shows."""
    idx = np.array([1, 0, 0, 2])  # a _ _ b
    prob = np.array([0.9, 0.8, 0.7, 0.9])
    space = np.array([0.0, 0.02, 0.3, 0.0])
    reading = ctc_greedy_decode(idx, prob, WIDE, space=space, space_prob=0.05)
    assert reading.text == "a b"
    assert reading.char_positions == pytest.approx([0.5 / 4, 2.5 / 4, 3.5 / 4])  # the space at its step
    assert reading.char_confidences == pytest.approx([0.9, 0.3, 0.9])
    assert reading.confidence == pytest.approx(np.mean([0.9, 0.3, 0.9]))
    assert ctc_greedy_decode(idx, prob, WIDE, space=space, space_prob=0.5).text == "ab"  # under the bar
    assert ctc_greedy_decode(idx, prob, WIDE, space=space, space_prob=None).text == "ab"  # arg-max only


def test_weak_spaces_never_cut_off_a_lone_symbol_or_split_digits() -> None:
    space = np.array([0.0, 0.5, 0.0, 0.5, 0.0, 0.5, 0.0])
    # $ _ 4 _ 5 _ a: "$" alone would be no word, "45" is one number; "45" and "a" may part
    idx = np.array([3, 0, 4, 0, 5, 0, 1])
    reading = ctc_greedy_decode(idx, np.ones(7), WIDE, space=space, space_prob=0.05)
    assert reading.text == "$45 a"
    # a _ $ _ b: one cut, not two, or the "$" between them would be a piece of its own
    idx = np.array([1, 0, 3, 0, 2])
    reading = ctc_greedy_decode(idx, np.ones(5), WIDE, space=np.array([0, 0.5, 0, 0.5, 0]), space_prob=0.05)
    assert reading.text == "a $b"


def test_a_space_read_by_the_arg_max_is_not_doubled() -> None:
    idx = np.array([1, 6, 0, 2])  # a ␣ _ b
    reading = ctc_greedy_decode(idx, np.ones(4), WIDE, space=np.array([0.0, 0.9, 0.4, 0.0]), space_prob=0.05)
    assert reading.text == "a b"


def test_bucket_width_picks_smallest_bucket_and_caps() -> None:
    buckets = (160, 320, 640)
    assert bucket_width(100, 48, buckets) == (100, 160)
    assert bucket_width(200, 48, buckets) == (200, 320)
    assert bucket_width(100, 24, buckets) == (200, 320)  # scaled to height 48 first
    assert bucket_width(5000, 48, buckets) == (640, 640)  # very long lines are squeezed into the last


def test_plan_batches_groups_by_bucket_and_respects_batch_size() -> None:
    shapes = [(48, 100)] * 5 + [(48, 300)] * 3 + [(48, 90)]
    plan = plan_batches(shapes, RecognizerConfig(batch_size=4, width_buckets=(160, 320)))
    assert [b for b, _ in plan] == [160, 160, 320]
    assert sorted(i for _, members in plan for i in members) == list(range(9))
    assert all(len(members) <= 4 for _, members in plan)
    assert set(plan[-1][1]) == {5, 6, 7}


def test_normalise_crop_pads_right_and_scales_to_minus_one_one() -> None:
    crop = np.full((24, 50, 3), 255, dtype=np.uint8)
    out = np.zeros((3, REC_HEIGHT, 160), dtype=np.float32)
    fraction = normalise_crop(crop, 160, out)
    assert fraction == pytest.approx(100 / 160)
    assert np.allclose(out[:, :, :100], 1.0) and np.allclose(out[:, :, 100:], 0.0)


def test_wide_recognition_buckets_get_fewer_rows() -> None:
    from wildocr.engine.recognition import RecognizerConfig, plan_batches

    shapes = [(48, 100)] * 40 + [(48, 1200)] * 5
    cfg = RecognizerConfig(batch_size=32, width_buckets=(160, 1280), max_batch_width=2560)
    sizes = {
        bucket: max(len(m) for b, m in plan_batches(shapes, cfg) if b == bucket) for bucket in (160, 1280)
    }
    assert sizes == {160: 16, 1280: 2}  # 2560 columns: 16 rows of 160, 2 of 1280
    uncapped = plan_batches(
        shapes, RecognizerConfig(batch_size=32, width_buckets=(160, 1280), max_batch_width=0)
    )
    assert [len(m) for _, m in uncapped] == [32, 8, 5]
