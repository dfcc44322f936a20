"""Recognizer fine-tuning: crops cut the way the engine cuts them, labels in the model's own charset, CTC.

The charset is the one in the model's metadata and never changes (the exported graph keeps it); a label
with a character outside it cannot be taught and is skipped (counted).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor

from wildocr.engine.crop import crop_quad, pad_quad
from wildocr.engine.predictor import EngineConfig
from wildocr.engine.recognition import REC_HEIGHT, RecognizerConfig, bucket_width, normalise_crop
from wildocr.train.data import Crop, Photo, WordBox, read_pixels

# The engine's own width buckets: a crop is padded in training as it is when read.
BUCKETS = RecognizerConfig().width_buckets
STEP_WIDTH = 8  # input pixels per CTC time step (48x320 gives 40 steps)
# Words chain into a line when they overlap this much vertically (share of the smaller height), their
# heights differ less than this ratio, and the gap between them is under this many heights.
_LINE_OVERLAP, _LINE_HEIGHT_RATIO, _LINE_GAP = 0.6, 1.5, 1.2
_LINE_MAX_SHARED = 0.2  # ... and they overlap horizontally by less than this many heights
LINE_REPEATS = 2  # lines are about one example in fifteen; training shows each twice per epoch
_LINE_MAX_TILT = 0.12  # rise over run of a word's top edge; tilted words stay words only


@dataclass(frozen=True)
class Example:
    pixels: np.ndarray  # BGR crop, any size
    label: tuple[int, ...]  # charset indices (blank = 0 never appears)
    text: str
    repeats: int = 1  # times a training epoch shows it (validation: once)


class Charset:
    """The model's CTC labels (`engine.models.recognizer_charset`): text ↔ indices."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.index = {c: i for i, c in enumerate(self.labels) if i > 0}

    def encode(self, text: str) -> tuple[int, ...] | None:
        """Indices of the text's characters, or None when one is not in the charset."""
        try:
            return tuple(self.index[c] for c in text)
        except KeyError:
            return None

    def decode(self, steps: Sequence[int]) -> str:
        out, previous = [], 0
        for i in steps:
            if i != previous and i != 0:
                out.append(self.labels[i])
            previous = i
        return "".join(out)


class _Span(NamedTuple):
    """An annotated word's axis-aligned extent."""

    x0: float
    y0: float
    x1: float
    y1: float
    word: WordBox

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def _tilted(word: WordBox) -> bool:
    (tx, ty), (rx, ry) = word.quad[0], word.quad[1]
    return bool(abs(ry - ty) > _LINE_MAX_TILT * max(abs(rx - tx), 1.0))


def _continues(last: _Span, span: _Span) -> bool:
    """Whether `span` is the next word of the line that ends with `last`."""
    height = min(last.height, span.height)
    overlap = min(last.y1, span.y1) - max(last.y0, span.y0)
    ratio = max(last.height, span.height) / max(height, 1.0)
    gap = span.x0 - last.x1
    return (
        overlap > _LINE_OVERLAP * height
        and ratio < _LINE_HEIGHT_RATIO
        and -_LINE_MAX_SHARED * height < gap < _LINE_GAP * height
    )


def text_lines(words: Sequence[WordBox]) -> list[tuple[np.ndarray, str]]:
    """Runs of two or more annotated words side by side on one level line: (quad, texts joined by a space).

    The detector finds lines as often as words, and the engine reads a line as one crop and splits it at
    the spaces it reads (engine/words.py). A recognizer taught on word crops alone forgets those spaces
    and reads long crops worse (docs/accuracy.md), so training shows it lines too. A run that passes
    over an unreadable (`###`) box is left out: part of its crop would have no label.
    """
    spans = []
    for word in words:
        q = np.asarray(word.quad, dtype=np.float32)
        (x0, y0), (x1, y1) = q.min(0), q.max(0)
        spans.append(_Span(float(x0), float(y0), float(x1), float(y1), word))
    readable = sorted((s for s in spans if not s.word.ignore and not _tilted(s.word)), key=lambda s: s.x0)
    unreadable = [s for s in spans if s.word.ignore]
    lines: list[list[_Span]] = []
    for span in readable:
        line = next((line for line in lines if _continues(line[-1], span)), None)
        if line is None:
            lines.append([span])
        else:
            line.append(span)
    out = []
    for line in lines:
        if len(line) < 2:
            continue
        x0, y0 = min(s.x0 for s in line), min(s.y0 for s in line)
        x1, y1 = max(s.x1 for s in line), max(s.y1 for s in line)
        if any(u.x0 < x1 and u.x1 > x0 and u.y0 < y1 and u.y1 > y0 for u in unreadable):
            continue
        quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
        out.append((quad, " ".join(s.word.text for s in line)))
    return out


def examples(photos: Sequence[Photo], crops: Sequence[Crop], charset: Charset) -> tuple[list[Example], int]:
    """Word and line crops from photos (padded as the engine pads, `EngineConfig.pad_ratio`; lines:
    `text_lines`) and crops from crop folders; also returns how many labels were skipped (characters
    outside the charset, or too long for CTC)."""
    pad = EngineConfig().pad_ratio
    out: list[Example] = []
    skipped = 0

    def add(pixels: np.ndarray, text: str, repeats: int = 1) -> None:
        nonlocal skipped
        label = charset.encode(text)
        h, w = pixels.shape[:2]
        _, bucket = bucket_width(w, h, BUCKETS)
        doubled = sum(1 for a, b in itertools.pairwise(text) if a == b)  # CTC needs a blank between
        if not label or len(label) + doubled > bucket // STEP_WIDTH:
            skipped += 1
            return
        out.append(Example(pixels, label, text, repeats))

    for photo in photos:
        image = read_pixels(photo.path)
        if image is None:
            continue
        for word in photo.words:
            if word.ignore:
                continue
            quad = pad_quad(word.quad, pad, image.shape[:2])
            add(crop_quad(image, quad), word.text)
        for line_quad, text in text_lines(photo.words):
            add(crop_quad(image, pad_quad(line_quad, pad, image.shape[:2])), text, LINE_REPEATS)
    for crop in crops:
        pixels = read_pixels(crop.path)
        if pixels is not None:
            add(pixels, crop.text)
    return out, skipped


def augment(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop as a detector box and a camera might have given it: each side moved in or out by a few
    per cent of the height (detected boxes are looser or tighter than annotated ones), then, each now and
    then, blur, JPEG artefacts and another exposure (Google Glass photos are soft and grainy)."""
    h, w = pixels.shape[:2]
    top, bottom = (int(v) for v in np.rint(rng.uniform(-0.06, 0.12, 2) * h))
    left, right = (int(v) for v in np.rint(rng.uniform(-0.08, 0.25, 2) * h))
    out = pixels[max(0, -top) : h - max(0, -bottom), max(0, -left) : w - max(0, -right)]
    if out.shape[0] < 4 or out.shape[1] < 4:
        out = pixels
    out = cv2.copyMakeBorder(
        out, max(0, top), max(0, bottom), max(0, left), max(0, right), cv2.BORDER_REPLICATE
    )
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 1.3)))
    if rng.random() < 0.3:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 70))])
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
        out = out if decoded is None else np.asarray(decoded)
    if rng.random() < 0.5:
        out = cv2.convertScaleAbs(out, alpha=float(rng.uniform(0.7, 1.3)), beta=float(rng.uniform(-30, 30)))
    return out


def batches(
    items: Sequence[Example], batch_size: int, rng: np.random.Generator | None, *, augmented: bool = False
) -> Iterator[tuple[Tensor, Tensor, Tensor, list[Example]]]:
    """Batches of one width bucket (as the engine batches): (inputs, targets, target lengths, examples).
    `rng` None keeps a fixed order and shows each example once (validation); `augmented` (with an rng)
    shows each crop changed by `augment`."""
    by_bucket: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        h, w = item.pixels.shape[:2]
        by_bucket.setdefault(bucket_width(w, h, BUCKETS)[1], []).extend(
            [i] * (item.repeats if rng is not None else 1)
        )
    chunks: list[tuple[int, list[int]]] = []
    for bucket, members in sorted(by_bucket.items()):
        if rng is not None:
            members = [members[j] for j in rng.permutation(len(members))]
        rows = max(1, batch_size * 320 // bucket)  # as many pixels per batch as batch_size × 320
        chunks += [(bucket, members[s : s + rows]) for s in range(0, len(members), rows)]
    if rng is not None:
        chunks = [chunks[j] for j in rng.permutation(len(chunks))]
    for bucket, members in chunks:
        x = np.zeros((len(members), 3, REC_HEIGHT, bucket), dtype=np.float32)
        for row, i in enumerate(members):
            pixels = items[i].pixels
            normalise_crop(augment(pixels, rng) if augmented and rng is not None else pixels, bucket, x[row])
        chosen = [items[i] for i in members]
        targets = torch.tensor([c for e in chosen for c in e.label], dtype=torch.long)
        lengths = torch.tensor([len(e.label) for e in chosen], dtype=torch.long)
        yield torch.from_numpy(x), targets, lengths, chosen


def loss(log_probs: Tensor, targets: Tensor, lengths: Tensor) -> Tensor:
    """CTC on the model's log-probabilities (N, T, C), every time step an input step (as decoded)."""
    n, steps, _ = log_probs.shape
    inputs = torch.full((n,), steps, dtype=torch.long)
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, inputs, lengths, blank=0, zero_infinity=True
    )


def correct(log_probs: Tensor, chosen: Sequence[Example], charset: Charset) -> int:
    """Words read exactly (greedy CTC over every step, as the engine reads)."""
    best = log_probs.argmax(dim=2).cpu().tolist()
    return sum(charset.decode(steps) == e.text for steps, e in zip(best, chosen, strict=True))
