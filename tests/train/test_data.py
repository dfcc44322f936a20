"""wildocr.train.data: the three layouts read back, and broken training input as clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from wildocr.train.data import TrainDataError, load_dataset, read_pixels, split


def _icdar(root: Path, gt: str, name: str = "img_1") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "gts").mkdir()
    cv2.imwrite(str(root / "images" / f"{name}.jpg"), np.full((40, 60, 3), 200, np.uint8))
    (root / "gts" / f"gt_{name}.txt").write_text(gt, encoding="utf-8-sig")
    return root


def _write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def test_icdar_folder(tmp_path: Path) -> None:
    data = load_dataset(_icdar(tmp_path / "ic", "1,2,30,2,30,12,1,12,Hello, world\n5,5,9,5,9,9,5,9,###\n"))
    assert data.kind == "icdar" and data.describe()["items"] == 1
    words = data.photos[0].words
    assert [w.text for w in words] == ["Hello, world", "###"]  # commas inside the text kept
    assert [w.ignore for w in words] == [False, True]
    assert words[0].quad.tolist() == [[1, 2], [30, 2], [30, 12], [1, 12]]


def test_jsonl_file_and_folder(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
    line = {"image": "a.png", "words": [{"poly": [[0, 0], [9, 0], [9, 5], [0, 5]], "text": "ab"}]}
    (tmp_path / "ground_truth.jsonl").write_text(json.dumps(line) + "\n\n")
    for path in (tmp_path / "ground_truth.jsonl", tmp_path):
        data = load_dataset(path)
        assert data.kind == "jsonl" and data.photos[0].path == tmp_path / "a.png"
        assert read_pixels(data.photos[0].path) is not None


def test_crop_folder(tmp_path: Path) -> None:
    (tmp_path / "crops").mkdir()
    cv2.imwrite(str(tmp_path / "crops" / "w.png"), np.zeros((10, 30, 3), np.uint8))
    (tmp_path / "labels.tsv").write_text("w.png\tSHOP\n")
    data = load_dataset(tmp_path)
    assert data.kind == "crops" and data.crops[0].text == "SHOP" and data.crops[0].path.is_file()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _icdar(p, "1,2,3,4,5,6,7,x,word\n"), r"gt_img_1.txt:1: coordinates are not numbers"),
        (lambda p: _icdar(p, "1,2,3,4,word\n"), r"gt_img_1.txt:1: expected x1,y1"),
        (
            lambda p: _write(p, "d.jsonl", '{"image": "a.png"}\n'),
            r"d.jsonl:1: expected",
        ),
        (lambda p: _write(p, "d.jsonl", "not json\n"), r"d.jsonl:1: expected"),
        (
            lambda p: _write(p, "d.jsonl", '{"image": "a", "words": [{"poly": [1, 2], "text": "x"}]}'),
            r"d.jsonl:1: a polygon must be 4 points",
        ),
        (
            lambda p: _write(p, "labels.tsv", "no tab here\n").parent,
            r"labels.tsv:1: expected file<TAB>text",
        ),
        (lambda p: _write(p, "labels.tsv", "").parent, r"holds no labelled crops"),
        (lambda p: p / "missing", r"no such file or folder"),
        (lambda p: p, r"not training data"),
    ],
)
def test_broken_input_is_a_clear_error(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(TrainDataError, match=message):
        load_dataset(make(tmp_path))


def test_photo_without_ground_truth_is_named(tmp_path: Path) -> None:
    root = _icdar(tmp_path, "1,1,5,1,5,5,1,5,a\n")
    cv2.imwrite(str(root / "images" / "img_2.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TrainDataError, match=r"img_2.jpg: no ground truth .*gt_img_2.txt"):
        load_dataset(root)


def test_undecodable_photo_is_skipped_not_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    assert read_pixels(bad) is None
    assert read_pixels(tmp_path / "gone.jpg") is None


def test_split_is_seeded_and_keeps_one_for_validation() -> None:
    items = list(range(20))
    train, val = split(items, 0.1, seed=3)
    assert len(val) == 2 and sorted(train + val) == items
    assert split(items, 0.1, seed=3) == (train, val)
    assert split([1, 2], 0.01, seed=0)[1] != []
