"""wildocr.train.score: ICDAR 2015's matching rules, and photos read through the engine and scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("shapely", reason="the 'train' extra (shapely) is not installed")

from tests.helpers import axis_box
from wildocr.engine import EngineConfig, OCREngine, backends
from wildocr.samples import generate
from wildocr.train.data import WordBox, load_dataset
from wildocr.train.score import Tally, in_dictionary, read_and_score, score_photo


def _read(text: str, quad: np.ndarray) -> tuple[list[list[float]], str]:
    return quad.tolist(), text


def test_one_detection_matches_one_annotated_word_best_overlap_first() -> None:
    annotated = [WordBox(axis_box(0, 0, 100, 30), "Exit"), WordBox(axis_box(120, 0, 100, 30), "Door")]
    read = [
        _read("EXIT", axis_box(10, 0, 90, 30)),  # IoU 0.9 with Exit
        _read("Exit", axis_box(0, 0, 100, 30)),  # IoU 1.0 with Exit: this one takes it
        _read("Door", axis_box(0, 0, 220, 30)),  # over both, IoU < 0.5 with each
    ]
    assert score_photo(read, annotated, end_to_end=False) == Tally(matched=1, annotated=2, detected=3)


def test_unreadable_regions_and_short_words_are_not_counted() -> None:
    annotated = [
        WordBox(axis_box(0, 0, 100, 30), "Exit"),
        WordBox(axis_box(200, 0, 100, 30), "###"),
        WordBox(axis_box(400, 0, 40, 30), "to"),  # too short for the end-to-end dictionary
    ]
    read = [
        _read('"exit."', axis_box(0, 0, 100, 30)),  # same text once case and outer punctuation are aside
        _read("anything", axis_box(205, 2, 90, 26)),  # over `###`: not a detection at all
        _read("to", axis_box(400, 0, 40, 30)),
    ]
    assert score_photo(read, annotated, end_to_end=False) == Tally(2, 2, 2)
    # End to end "to" is don't-care, so is the word read over it.
    assert score_photo(read, annotated, end_to_end=True) == Tally(1, 1, 1)
    misread = [_read("Exlt", axis_box(0, 0, 100, 30))]
    assert score_photo(misread, annotated[:1], end_to_end=True) == Tally(0, 1, 1)


def test_dictionary_rule_and_rates() -> None:
    assert in_dictionary("Theatre's") and in_dictionary("(EXIT)") and in_dictionary("co-op")
    assert not in_dictionary("I2R") and not in_dictionary("ab") and not in_dictionary("A.B.C")
    assert Tally(3, 4, 6).rates() == {"precision": 0.5, "recall": 0.75, "hmean": 0.6}
    assert Tally(0, 0, 0).rates() == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}
    assert Tally(1, 2, 3) + Tally(1, 1, 1) == Tally(2, 3, 4)


@pytest.mark.slow  # reads 4 generated photos twice with the real models
def test_photos_read_through_a_detector_session_are_scored(tmp_path: Path) -> None:
    """What a detector's validation does each epoch: the stock weights find the generated words; weights
    that find nothing (the map's last bias far below zero) score zero, and are told apart."""
    from tests.helpers import model_folder

    generate(str(tmp_path / "photos"), count=4, seed=11)
    photos = load_dataset(tmp_path / "photos").photos
    config = EngineConfig(device="cpu").with_options(det_precision="fp32")
    stock = read_and_score(OCREngine(config), photos)
    assert stock["det_recall"] > 0.8 and stock["e2e_hmean"] > 0.6
    assert stock["hmean"] == pytest.approx((stock["det_hmean"] + stock["e2e_hmean"]) / 2, abs=1e-4)
    blind = model_folder(tmp_path / "blind", det_bias_shift=-50.0)
    session = backends.create_session((blind / "det.onnx").read_bytes(), backends.SessionOptions())
    scores = read_and_score(OCREngine(config, detector_session=session), photos)
    assert scores["det_recall"] == 0.0 and scores["hmean"] == 0.0
