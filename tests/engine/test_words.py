"""`engine/words.py`: lines split into words from CTC positions (pure functions, hand-built inputs)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wildocr.engine.types import Detection, Reading
from wildocr.engine.words import line_words, tighten


def test_line_words_cut_at_spaces_from_ctc_positions() -> None:
    quad = np.array([[0, 0], [100, 0], [100, 10], [0, 10]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.9)
    # "ab cd": characters at 10%, 20%, (space 50%), 80%, 90%
    reading = Reading("ab cd", 0.9, (0.1, 0.2, 0.5, 0.8, 0.9), (0.9, 0.9, 0.5, 0.8, 0.8))
    words = [w for w, _ in line_words(det, quad, reading, line_id=3)]
    assert [w.text for w in words] == ["ab", "cd"]
    assert all(w.line_id == 3 for w in words)
    assert words[0].bbox[2] <= words[1].bbox[0]  # no overlap
    assert 0 <= words[0].bbox[0] < 10 and 90 < words[1].bbox[2] <= 100
    assert words[1].confidence == pytest.approx(0.8)


def test_line_words_single_word_keeps_detection_box_untrimmed() -> None:
    quad = np.array([[0, 0], [50, 0], [50, 20], [0, 20]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.7)
    reading = Reading("hello", 0.95, (0.2, 0.4, 0.5, 0.6, 0.8))
    words = [w for w, _ in line_words(det, quad, reading, 0, height_scale=0.5, trim_to_characters=False)]
    assert len(words) == 1 and words[0].text == "hello"
    assert words[0].bbox == (0.0, 5.0, 50.0, 15.0)  # height halved about the centre line


def test_single_word_box_spans_its_characters() -> None:
    """A line holding one word and an unread mark (a logo, an arrow) reports the word's own extent."""
    quad = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.7)
    # characters between 50% and 90% of the crop: the left half holds something the recogniser skipped
    words = [w for w, _ in line_words(det, quad, Reading("shop", 0.95, (0.5, 0.6, 0.8, 0.9)), 0)]
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
    words = [w for w, _ in line_words(det, quad, Reading(text, 0.9, positions), 0)]
    assert [w.text for w in words] == expected
    for a, b in itertools.pairwise(words):
        assert a.bbox[2] <= b.bbox[0]  # side by side, no overlap
    # spaces only (the switch off): the reading is one word, as before
    assert len(
        [w for w, _ in line_words(det, quad, Reading(text, 0.9, positions), 0, split_at_symbols=False)]
    ) == len(text.split())


def test_arrow_is_kept_out_of_the_word_box() -> None:
    quad = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.9)
    # "↑" at 10%, "Add" at 50-70%
    words = [w for w, _ in line_words(det, quad, Reading("↑Add", 0.9, (0.1, 0.5, 0.6, 0.7)), 0)]
    assert [w.text for w in words] == ["Add"]
    assert words[0].bbox[0] >= 30  # past the midpoint between the arrow and the "A"


def test_tighten_keeps_centre_line() -> None:
    quad = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=np.float64)
    assert tighten(quad, 0.6).tolist() == [[0, 2], [10, 2], [10, 8], [0, 8]]
