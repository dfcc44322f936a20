"""The engine's pure pieces on hand-built inputs: CTC decoding, bucketing, crop geometry, word splitting."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wildocr.engine.crop import crop_quad, is_vertical, pad_quad
from wildocr.engine.detection import DetectorConfig, boxes_from_probability, order_clockwise
from wildocr.engine.recognition import (
    REC_HEIGHT,
    RecognizerConfig,
    bucket_width,
    ctc_greedy_decode,
    normalise_crop,
    plan_batches,
)
from wildocr.engine.types import Detection, Reading
from wildocr.engine.words import split_line, tighten

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


def test_pad_quad_grows_along_box_axes_and_clamps() -> None:
    quad = np.array([[100, 50], [300, 50], [300, 90], [100, 90]], dtype=np.float32)
    padded = pad_quad(quad, 0.015, (200, 400))
    # 1.5% of the 200 px width on each side, 1.5% of the 40 px height
    assert padded[0] == pytest.approx([97.0, 49.4])
    assert padded[2] == pytest.approx([303.0, 90.6])
    clamped = pad_quad(np.array([[0, 0], [399, 0], [399, 199], [0, 199]], dtype=np.float32), 0.1, (200, 400))
    assert clamped.min() >= 0 and clamped[:, 0].max() <= 399 and clamped[:, 1].max() <= 199


def test_crop_quad_rectifies_and_turns_vertical_text() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[10:30, 20:120] = 255
    quad = np.array([[20, 10], [120, 10], [120, 30], [20, 30]], dtype=np.float32)
    crop = crop_quad(image, quad)
    assert crop.shape[:2] == (20, 100) and crop.mean() > 250
    tall = np.array([[20, 10], [40, 10], [40, 90], [20, 90]], dtype=np.float32)
    assert is_vertical(tall)
    assert crop_quad(image, tall).shape[:2] == (20, 80)  # turned: text now runs left to right


def test_order_clockwise_from_any_order() -> None:
    pts = np.array([[10, 20], [0, 0], [10, 0], [0, 20]], dtype=np.float32)
    assert order_clockwise(pts).tolist() == [[0, 0], [10, 0], [10, 20], [0, 20]]


def test_boxes_from_probability_finds_each_blob_in_image_pixels() -> None:
    prob = np.zeros((64, 128), dtype=np.float32)
    prob[10:20, 10:60] = 0.9
    prob[40:50, 70:120] = 0.8
    dets = boxes_from_probability(prob, (128, 256), DetectorConfig(unclip_ratio=1.0))
    assert len(dets) == 2
    first = np.asarray(dets[0].quad)
    assert first[:, 0].min() < 25 and first[:, 0].max() > 115  # scaled ×2 to image pixels
    assert 0.7 < dets[0].score <= 0.9  # mean probability inside the (dilated) contour
    assert dets[0].quad[0][1] < dets[1].quad[0][1]  # reading order


def test_split_line_cuts_at_spaces_from_ctc_positions() -> None:
    quad = np.array([[0, 0], [100, 0], [100, 10], [0, 10]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.9)
    # "ab cd": characters at 10%, 20%, (space 50%), 80%, 90%
    reading = Reading("ab cd", 0.9, (0.1, 0.2, 0.5, 0.8, 0.9), (0.9, 0.9, 0.5, 0.8, 0.8))
    words = split_line(det, quad, reading, line_id=3)
    assert [w.text for w in words] == ["ab", "cd"]
    assert all(w.line_id == 3 for w in words)
    assert words[0].bbox[2] <= words[1].bbox[0]  # no overlap
    assert 0 <= words[0].bbox[0] < 10 and 90 < words[1].bbox[2] <= 100
    assert words[1].confidence == pytest.approx(0.8)


def test_split_line_single_word_keeps_detection_box_untrimmed() -> None:
    quad = np.array([[0, 0], [50, 0], [50, 20], [0, 20]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.7)
    reading = Reading("hello", 0.95, (0.2, 0.4, 0.5, 0.6, 0.8))
    words = split_line(det, quad, reading, 0, height_scale=0.5, trim_to_characters=False)
    assert len(words) == 1 and words[0].text == "hello"
    assert words[0].bbox == (0.0, 5.0, 50.0, 15.0)  # height halved about the centre line


def test_single_word_box_spans_its_characters() -> None:
    """A line holding one word and an unread mark (a logo, an arrow) reports the word's own extent."""
    quad = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.7)
    # characters between 50% and 90% of the crop: the left half holds something the recogniser skipped
    words = split_line(det, quad, Reading("shop", 0.95, (0.5, 0.6, 0.8, 0.9)), 0)
    assert [w.text for w in words] == ["shop"]
    x0, _, x1, _ = words[0].bbox
    assert 40 <= x0 <= 50 and 90 <= x1 <= 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Orchard·Ngee", ["Orchard", "Ngee"]),  # a middle dot belongs to neither word
        ("City•TANGS|ION", ["City", "TANGS", "ION"]),
        ("↑Toilet", ["Toilet"]),  # arrows are marks, not text
        ("EXIT→", ["EXIT"]),
        ("OCBC信用卡", ["OCBC", "信用卡"]),  # Latin meets another script
        ("B1 2楼", ["B1", "2楼"]),  # digits go with either script
        ("m&m's", ["m&m's"]),  # ordinary punctuation stays inside a word
        ("Tärget", ["Tärget"]),  # accented Latin is Latin
        ("ΣTAΣH", ["ΣTAΣH"]),  # capital Greek read with Latin look-alikes stays one word
        ("COKСОК", ["COKСОК"]),  # Latin next to Cyrillic: no cut inside the European alphabets
        ("SALEتخفيض", ["SALE", "تخفيض"]),  # Latin meets Arabic
    ],
)
def test_words_end_at_separators_arrows_and_script_changes(text: str, expected: list[str]) -> None:
    quad = np.array([[0, 0], [200, 0], [200, 20], [0, 20]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.9)
    positions = tuple((i + 0.5) / len(text) for i in range(len(text)))
    words = split_line(det, quad, Reading(text, 0.9, positions), 0)
    assert [w.text for w in words] == expected
    for a, b in itertools.pairwise(words):
        assert a.bbox[2] <= b.bbox[0]  # side by side, no overlap
    # spaces only (the switch off): the reading is one word, as before
    assert len(split_line(det, quad, Reading(text, 0.9, positions), 0, split_at_symbols=False)) == len(
        text.split()
    )


def test_arrow_is_kept_out_of_the_word_box() -> None:
    quad = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.9)
    # "↑" at 10%, "Add" at 50-70%
    words = split_line(det, quad, Reading("↑Add", 0.9, (0.1, 0.5, 0.6, 0.7)), 0)
    assert [w.text for w in words] == ["Add"]
    assert words[0].bbox[0] >= 30  # past the midpoint between the arrow and the "A"


def test_lines_joined_by_a_vertical_stroke_are_split() -> None:
    """Three text lines joined at their left end by an arrow column (one region): three boxes."""
    prob = np.zeros((120, 240), dtype=np.float32)
    for top in (20, 50, 80):
        prob[top : top + 10, 20:220] = 0.9  # a text line, 10 px thick
    prob[20:90, 20:28] = 0.9  # the column joining them
    joined = boxes_from_probability(prob, (120, 240), DetectorConfig())  # off by default
    assert len(joined) == 1
    split = boxes_from_probability(prob, (120, 240), DetectorConfig(split_fill=0.5))
    assert len(split) == 3
    heights = [np.ptp(np.asarray(d.quad)[:, 1]) for d in split]
    assert max(heights) < 30  # each a single line, not the 70-px block
    # a straight line is left alone
    line = np.zeros((120, 240), dtype=np.float32)
    line[50:60, 20:220] = 0.9
    assert len(boxes_from_probability(line, (120, 240), DetectorConfig(split_fill=0.5))) == 1


def test_tighten_keeps_centre_line() -> None:
    quad = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=np.float64)
    assert tighten(quad, 0.6).tolist() == [[0, 2], [10, 2], [10, 8], [0, 8]]
