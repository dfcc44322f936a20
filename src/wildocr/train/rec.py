"""Recognizer fine-tuning: crops cut the way the engine cuts them, labels in the model's own charset, CTC.

The charset is the one in the model's metadata and never changes (the exported graph keeps it); a label
with a character outside it cannot be taught and is skipped (counted).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from wildocr.engine.crop import crop_quad, pad_quad
from wildocr.engine.predictor import EngineConfig
from wildocr.engine.recognition import REC_HEIGHT, bucket_width, normalise_crop
from wildocr.train.data import Crop, Photo, read_pixels

# Training's width buckets (the engine's coarser ones before 2026-12-06); wider words are squeezed into 640.
BUCKETS = (160, 320, 480, 640)
STEP_WIDTH = 8  # input pixels per CTC time step (48x320 gives 40 steps)


@dataclass(frozen=True)
class Example:
    pixels: np.ndarray  # BGR crop, any size
    label: tuple[int, ...]  # charset indices (blank = 0 never appears)
    text: str


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


def examples(photos: Sequence[Photo], crops: Sequence[Crop], charset: Charset) -> tuple[list[Example], int]:
    """Word crops from photos (padded as the engine pads, `EngineConfig.pad_ratio`) and crop folders;
    also returns how many labels were skipped (characters outside the charset, or too long for CTC)."""
    pad = EngineConfig().pad_ratio
    out: list[Example] = []
    skipped = 0

    def add(pixels: np.ndarray, text: str) -> None:
        nonlocal skipped
        label = charset.encode(text)
        h, w = pixels.shape[:2]
        _, bucket = bucket_width(w, h, BUCKETS)
        repeats = sum(1 for a, b in itertools.pairwise(text) if a == b)
        if not label or len(label) + repeats > bucket // STEP_WIDTH:
            skipped += 1
            return
        out.append(Example(pixels, label, text))

    for photo in photos:
        image = read_pixels(photo.path)
        if image is None:
            continue
        for word in photo.words:
            if word.ignore:
                continue
            quad = pad_quad(word.quad, pad, image.shape[:2])
            add(crop_quad(image, quad), word.text)
    for crop in crops:
        pixels = read_pixels(crop.path)
        if pixels is not None:
            add(pixels, crop.text)
    return out, skipped


def batches(
    items: Sequence[Example], batch_size: int, rng: np.random.Generator | None
) -> Iterator[tuple[Tensor, Tensor, Tensor, list[Example]]]:
    """Batches of one width bucket (as the engine batches): (inputs, targets, target lengths, examples).
    `rng` None keeps a fixed order (validation)."""
    by_bucket: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        h, w = item.pixels.shape[:2]
        by_bucket.setdefault(bucket_width(w, h, BUCKETS)[1], []).append(i)
    chunks: list[tuple[int, list[int]]] = []
    for bucket, members in sorted(by_bucket.items()):
        if rng is not None:
            members = [members[j] for j in rng.permutation(len(members))]
        rows = max(1, batch_size * BUCKETS[1] // bucket)  # as many pixels per batch as batch_size × 320
        chunks += [(bucket, members[s : s + rows]) for s in range(0, len(members), rows)]
    if rng is not None:
        chunks = [chunks[j] for j in rng.permutation(len(chunks))]
    for bucket, members in chunks:
        x = np.zeros((len(members), 3, REC_HEIGHT, bucket), dtype=np.float32)
        for row, i in enumerate(members):
            normalise_crop(items[i].pixels, bucket, x[row])
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
