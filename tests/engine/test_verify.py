"""The word verifier: junk the mean-confidence rule kept is dropped, real words are not.

Real models on real pixels: a board of non-text patterns (stripes, grids, noise, blobs, zigzags), which
the detector finds and the recogniser reads as "w", "ww", "WW" at high mean confidence, and the
generated sample photos, whose words must all survive.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from include.sample_data import generate
from wildocr.engine import EngineConfig, OCREngine, decode_image
from wildocr.engine.types import Detection, Reading
from wildocr.engine.verify import FEATURES, STOCK_VERIFIER, word_features
from wildocr.engine.words import line_words


def texture_board(seed: int, patches: int = 40) -> np.ndarray:
    """A plain board covered with non-text patterns, 40 of them in a 4 x 10 grid."""
    rng = np.random.default_rng(seed)
    board = np.full((720, 1280, 3), 200, np.uint8)
    for k in range(patches):
        h, w = int(rng.integers(20, 60)), int(rng.integers(60, 300))
        patch = np.full((h, w), 230, np.uint8)
        kind = k % 5
        if kind == 0:  # vertical bars
            step = int(rng.integers(4, 14))
            patch[:, ::step] = 20
            patch[:, 1::step] = 20
        elif kind == 1:  # a grid
            step = int(rng.integers(6, 16))
            patch[::step] = 30
            patch[:, ::step] = 30
        elif kind == 2:  # noise
            patch = rng.integers(0, 255, (h, w)).astype(np.uint8)
        elif kind == 3:  # blobs
            for _ in range(int(rng.integers(3, 10))):
                centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
                cv2.circle(patch, centre, int(rng.integers(3, h // 2 + 4)), 20, -1)
        else:  # a zigzag
            points = np.array([[x, (h - 5) if (x // 10) % 2 else 5] for x in range(0, w, 10)], np.int32)
            cv2.polylines(patch, [points], False, 10, 3)
        x, y = 20 + (k % 4) * 310, 20 + (k // 4) * 70
        board[y : y + h, x : x + w] = cv2.cvtColor(patch, cv2.COLOR_GRAY2BGR)
    return board


@pytest.fixture(scope="module")
def engines(ocr_engine: OCREngine) -> tuple[OCREngine, OCREngine]:
    verified = ocr_engine
    mean_only = OCREngine(EngineConfig(device="cpu", verify_words=False, min_confidence=0.7))
    return verified, mean_only


def test_junk_patterns_read_confidently_are_dropped(engines) -> None:
    verified, mean_only = engines
    boards = [texture_board(seed) for seed in range(3)]
    kept_before = [w.text for r in mean_only.read(boards) for w in r.words]
    kept_now = [w.text for r in verified.read(boards) for w in r.words]
    assert len(kept_before) >= 12, kept_before  # what the mean-confidence rule let through
    assert len(kept_now) <= len(kept_before) // 4, (kept_now, kept_before)


def _iou(a, b) -> float:
    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union else 0.0


def test_every_word_read_right_stays(engines, tmp_path: Path) -> None:
    """On generated photos (hard ones too), no word the mean-confidence rule reads right is dropped."""
    verified, mean_only = engines
    truth = generate(str(tmp_path / "plain"), count=3, seed=11) + generate(
        str(tmp_path / "hard"), count=4, seed=23, hard=True
    )
    folders = ["plain"] * 3 + ["hard"] * 4
    images = [
        decode_image((tmp_path / folder / line["image"]).read_bytes())
        for folder, line in zip(folders, truth, strict=True)
    ]

    def right(results) -> set[tuple[int, str]]:
        return {
            (i, gt["text"])
            for i, (line, result) in enumerate(zip(truth, results, strict=True))
            for gt in line["words"]
            if any(w.text == gt["text"] and _iou(w.poly, gt["poly"]) > 0.5 for w in result.words)
        }

    before, now = right(mean_only.read(images)), right(verified.read(images))
    assert len(before) >= 100
    assert before <= now, sorted(before - now)


def test_features_follow_the_word() -> None:
    features = word_features("Exit", [0.99, 0.98, 0.6, 0.97], det_score=0.8, line_confidence=0.9)
    assert features.shape == (len(FEATURES),)
    as_dict = dict(zip(FEATURES, features, strict=True))
    assert as_dict["min_logit"] == pytest.approx(np.log(0.6 / 0.4))
    assert as_dict["mean_probability"] == pytest.approx(0.885)
    assert as_dict["log_length"] == pytest.approx(np.log(4))
    assert as_dict["mixed_case"] == 0.0
    assert word_features("GUCCi", [0.9] * 5, 0.8, 0.9)[FEATURES.index("mixed_case")] == 1.0


def test_surer_readings_score_higher() -> None:
    def probabilities(confidence: float, det_score: float = 0.8) -> tuple[float, float]:
        return STOCK_VERIFIER.probabilities(word_features("Station", [confidence] * 7, det_score, confidence))

    low, high = probabilities(0.75), probabilities(0.99)
    assert high[0] > low[0] and high[1] > low[1]
    assert probabilities(0.99, det_score=0.9)[0] > probabilities(0.99, det_score=0.6)[0]
    assert high[0] >= 0.5 and high[1] >= 0.25  # a clean word is kept at the default thresholds


def test_line_words_carry_each_words_character_confidences() -> None:
    quad = np.array([[0, 0], [200, 0], [200, 40], [0, 40]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.9)
    reading = Reading("ab cd", 0.8, (0.1, 0.2, 0.5, 0.7, 0.8), (0.9, 0.8, 0.5, 0.7, 0.6))
    pairs = line_words(det, quad, reading, 0)
    assert [w.text for w, _ in pairs] == ["ab", "cd"]
    assert [c.tolist() for _, c in pairs] == [[0.9, 0.8], [0.7, 0.6]]


def test_floor_and_switch() -> None:
    """min_confidence is a floor under the verifier; verify_words=False leaves the floor alone."""
    quad = np.array([[0, 0], [300, 0], [300, 40], [0, 40]], dtype=np.float64)
    det = Detection(quad=tuple(map(tuple, quad.tolist())), score=0.85)
    confident = Reading("Bakery", 0.99, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6), (0.99,) * 6)
    unsure = Reading("Bakcry", 0.6, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6), (0.6,) * 6)
    size = (100, 400)
    verified = OCREngine(EngineConfig(device="cpu"), lazy=True)
    assert [w.text for w in verified.assemble(size, [det, det], [confident, unsure])] == ["Bakery"]
    floor_only = OCREngine(EngineConfig(device="cpu", verify_words=False), lazy=True)
    both = floor_only.assemble(size, [det, det], [confident, unsure])
    assert [w.text for w in both] == ["Bakery", "Bakcry"]
    assert [w.line_id for w in floor_only.assemble(size, [det, det], [unsure, confident])] == [0, 1]
    strict_floor = OCREngine(EngineConfig(device="cpu", min_confidence=0.995), lazy=True)
    assert strict_floor.assemble(size, [det], [confident]) == []
