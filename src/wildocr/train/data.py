"""Labelled training data: photos with word polygons, and word crops with their text.

Three layouts, told apart by what is there:
- an ICDAR-style folder: `images/` and `gts/gt_<stem>.txt`, one word a line `x1,y1,...,x4,y4,text`
  (`###` = unreadable: ignored by the detector's loss, never a recognizer label);
- JSON lines (a `.jsonl` file, or a folder holding `ground_truth.jsonl`, as `wildocr.samples` writes):
  `{"image": path relative to the file, "words": [{"poly": [[x, y] x4], "text": "..."}]}`;
- a word-crop folder: `labels.tsv` (`file<TAB>text`, files relative to the folder), recognizer only.
A malformed annotation is a `TrainDataError` naming its file and line (a silent skip would train on
wrong targets); a photo that cannot be decoded is skipped and counted, like an error row.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wildocr.engine.imageio import ImageDecodeError, decode_image

log = logging.getLogger(__name__)

IGNORE_TEXT = "###"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
JSONL_NAME = "ground_truth.jsonl"


class TrainDataError(ValueError):
    """Training input that cannot be used; the message names the file (and line) and what is wrong."""


@dataclass(frozen=True)
class WordBox:
    quad: np.ndarray  # (4, 2) float32, clockwise from top-left as annotated
    text: str

    @property
    def ignore(self) -> bool:
        return self.text == IGNORE_TEXT or not self.text


@dataclass(frozen=True)
class Photo:
    path: Path
    words: tuple[WordBox, ...]


@dataclass(frozen=True)
class Crop:
    path: Path
    text: str


@dataclass
class DataSet:
    """What one `--data` path holds; `kind` goes into the model folder's manifest."""

    path: str
    kind: str  # icdar | jsonl | crops
    photos: list[Photo] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)

    @property
    def items(self) -> int:
        return len(self.photos) + len(self.crops)

    def describe(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "items": self.items}


def load_dataset(path: str | Path) -> DataSet:
    """Read one `--data` path (ICDAR folder, JSON lines, or word-crop folder); refuses an empty one."""
    p = Path(path)
    if p.is_file() and p.suffix == ".jsonl":
        data = DataSet(str(p), "jsonl", photos=_read_jsonl(p))
    elif p.is_dir() and (p / "labels.tsv").is_file():
        data = DataSet(str(p), "crops", crops=_read_crops(p))
    elif p.is_dir() and (p / "gts").is_dir() and (p / "images").is_dir():
        data = DataSet(str(p), "icdar", photos=_read_icdar(p))
    elif p.is_dir() and (p / JSONL_NAME).is_file():
        data = DataSet(str(p), "jsonl", photos=_read_jsonl(p / JSONL_NAME))
    elif not p.exists():
        raise TrainDataError(f"{p}: no such file or folder")
    else:
        raise TrainDataError(
            f"{p}: not training data: expected images/ + gts/ (ICDAR), a .jsonl file or a folder with "
            f"{JSONL_NAME}, or a folder with labels.tsv (word crops)"
        )
    if not data.items:
        raise TrainDataError(f"{p}: holds no labelled {'crops' if data.kind == 'crops' else 'photos'}")
    return data


def parse_icdar_line(line: str, where: str) -> WordBox:
    """`x1,y1,...,x4,y4,text` (the text may itself hold commas)."""
    parts = line.split(",", 8)
    if len(parts) < 9:
        raise TrainDataError(f"{where}: expected x1,y1,x2,y2,x3,y3,x4,y4,text, got {line[:80]!r}")
    try:
        coords = [float(v) for v in parts[:8]]
    except ValueError:
        raise TrainDataError(f"{where}: coordinates are not numbers: {line[:80]!r}") from None
    return WordBox(_quad(coords, where), parts[8])


def read_icdar_gt(path: Path) -> list[WordBox]:
    """One `gt_<stem>.txt` file (UTF-8, a BOM tolerated; blank lines skipped); a malformed line is a
    `TrainDataError` naming the file and line."""
    text = path.read_text(encoding="utf-8-sig")
    return [
        parse_icdar_line(line.rstrip("\r"), f"{path}:{number}")
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]


def _quad(coords: object, where: str) -> np.ndarray:
    try:
        quad = np.asarray(coords, dtype=np.float32).reshape(4, 2)
    except (ValueError, TypeError):
        raise TrainDataError(
            f"{where}: a polygon must be 4 points [[x, y], ...], got {coords!r:.80}"
        ) from None
    if not np.isfinite(quad).all():
        raise TrainDataError(f"{where}: polygon has a non-finite coordinate")
    return quad


def _read_icdar(root: Path) -> list[Photo]:
    photos = []
    for image in sorted((root / "images").iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        gt = root / "gts" / f"gt_{image.stem}.txt"
        if not gt.is_file():
            raise TrainDataError(f"{image}: no ground truth {gt}")
        photos.append(Photo(image, tuple(read_icdar_gt(gt))))
    return photos


def _read_jsonl(path: Path) -> list[Photo]:
    photos = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
            image, words = record["image"], record["words"]
            boxes = tuple(WordBox(_quad(w["poly"], where), str(w["text"])) for w in words)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TrainDataError(
                f'{where}: expected {{"image": ..., "words": [{{"poly": ..., "text": ...}}]}} ({exc})'
            ) from None
        photos.append(Photo(path.parent / str(image), boxes))
    return photos


def _read_crops(root: Path) -> list[Crop]:
    crops = []
    labels = root / "labels.tsv"
    for number, line in enumerate(labels.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        name, sep, text = line.rstrip("\r").partition("\t")
        if not sep or not name:
            raise TrainDataError(f"{labels}:{number}: expected file<TAB>text, got {line[:80]!r}")
        path = root / name
        if not path.is_file():
            path = root / "crops" / name  # the word-crops layout: names relative to crops/
        crops.append(Crop(path, text))
    return crops


def read_pixels(path: Path) -> np.ndarray | None:
    """BGR pixels, or None (logged) when the file cannot be read or decoded."""
    try:
        return decode_image(path.read_bytes())
    except (OSError, ImageDecodeError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None


def split(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): a seeded shuffle, at least one validation item when there are two or more."""
    order = list(items)
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(order) * fraction)) if len(order) > 1 else 0
    return order[n_val:], order[:n_val]
