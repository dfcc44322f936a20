"""Recognizer training examples: lines built from annotated words."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="the 'train' extra (PyTorch) is not installed")
from wildocr.train.data import Photo, WordBox
from wildocr.train.rec import LINE_REPEATS, Charset, Example, augment, batches, examples, text_lines


def word(x: float, y: float, w: float, h: float, text: str, rise: float = 0.0) -> WordBox:
    quad = np.array([[x, y], [x + w, y + rise], [x + w, y + h + rise], [x, y + h]], dtype=np.float32)
    return WordBox(quad, text)


def test_words_side_by_side_make_one_line_spanning_them() -> None:
    lines = text_lines([word(130, 52, 60, 30, "YOU"), word(50, 50, 70, 30, "THANK")])
    assert [text for _, text in lines] == ["THANK YOU"]
    quad = lines[0][0]
    assert quad.min(0).tolist() == [50, 50] and quad.max(0).tolist() == [190, 82]


@pytest.mark.parametrize(
    "words",
    [
        [word(50, 50, 70, 30, "ONE")],  # a single word is a word example already
        [word(50, 50, 70, 30, "TOP"), word(50, 90, 70, 30, "BOTTOM")],  # two rows
        [word(50, 50, 70, 30, "FAR"), word(200, 50, 70, 30, "APART")],  # gap over 1.2 heights
        [word(50, 50, 70, 30, "BIG"), word(125, 40, 70, 60, "SMALL")],  # heights 2:1
        [word(50, 50, 70, 30, "UP", rise=-20), word(125, 30, 70, 30, "HILL", rise=-20)],  # tilted
    ],
)
def test_no_line_where_the_words_do_not_sit_on_one(words: list[WordBox]) -> None:
    assert text_lines(words) == []


def test_a_run_over_an_unreadable_box_is_left_out() -> None:
    words = [word(50, 50, 70, 30, "A"), word(125, 50, 20, 30, "###"), word(130, 50, 60, 30, "B")]
    assert text_lines(words) == []
    assert [t for _, t in text_lines([*words[:1], words[2], word(50, 200, 70, 30, "###")])] == ["A B"]


def test_training_shows_a_repeated_example_that_often_and_validation_once() -> None:
    pixels = np.full((30, 90, 3), 128, np.uint8)
    items = [Example(pixels, (1, 2), "ab"), Example(pixels, (3, 4, 5), "a b", repeats=2)]

    def shown(rng: np.random.Generator | None) -> list[str]:
        return sorted(e.text for *_, chosen in batches(items, 8, rng) for e in chosen)

    assert shown(np.random.default_rng(0)) == ["a b", "a b", "ab"]
    assert shown(None) == ["a b", "ab"]


def test_a_photo_gives_its_words_once_and_their_line_repeated(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.full((120, 260, 3), 200, np.uint8))
    photo = Photo(
        path, (word(50, 50, 70, 30, "BOOK"), word(130, 52, 60, 30, "SHOP"), word(50, 5, 40, 20, "###"))
    )
    charset = Charset(["", *"BHKOPS "])
    got, skipped = examples([photo], [], charset)
    assert skipped == 0
    assert sorted((e.text, e.repeats) for e in got) == [("BOOK", 1), ("BOOK SHOP", LINE_REPEATS), ("SHOP", 1)]


def test_augmented_crops_stay_readable_sized_and_change_from_epoch_to_epoch() -> None:
    crop = np.full((40, 160, 3), 200, np.uint8)
    cv2.putText(crop, "EXIT", (10, 32), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (20, 20, 20), 2)
    seen = set()
    for seed in range(30):
        out = augment(crop, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape[2] == 3
        # each side moves by at most a quarter of the height outwards and less inwards
        assert 40 - 2 * 3 <= out.shape[0] <= 40 + 2 * 5 and 160 - 2 * 4 <= out.shape[1] <= 160 + 2 * 10
        seen.add(out.tobytes())
    assert len(seen) == 30
    charset = Charset(["<blank>", *"EXIT", " "])
    items = [Example(crop, charset.encode("EXIT") or (), "EXIT")] * 4
    plain = next(batches(items, 4, np.random.default_rng(0)))[0]
    changed = next(batches(items, 4, np.random.default_rng(0), augmented=True))[0]
    assert plain.shape == changed.shape and not np.array_equal(plain.numpy(), changed.numpy())
    assert np.array_equal(next(batches(items, 4, None, augmented=True))[0].numpy(), plain.numpy())
