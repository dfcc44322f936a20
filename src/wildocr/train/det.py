"""Detector fine-tuning: DB targets from word polygons, random crops around the engine's input scale, loss.

The shipped graph ends in the probability map (DB's threshold branch is not in the inference model), so
the loss is DB's map loss alone: balanced BCE (hard negatives at most 3 per positive) plus dice, on shrunk
word polygons, with `###` words and words too small to shrink masked out of both. Targets are WORD boxes:
the shipped detector finds lines, the product reports words.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import pyclipper
import torch
from torch import Tensor

from wildocr.engine.detection import STOCK_LIMIT_SIDE, preprocess
from wildocr.train.data import Photo, WordBox, read_pixels

SHRINK_RATIO = 0.4  # DB's r: the kernel is the polygon shrunk by area * (1 - r^2) / perimeter
MIN_WORD_SIDE = 4.0  # network pixels: smaller words are masked out, not taught as text or as background


def shrink(quad: np.ndarray, ratio: float = SHRINK_RATIO) -> np.ndarray | None:
    """DB's text kernel of a polygon (None when the polygon vanishes)."""
    area = abs(cv2.contourArea(quad.astype(np.float32)))
    length = cv2.arcLength(quad.astype(np.float32), True)
    if area < 1 or length == 0:
        return None
    distance = area * (1 - ratio**2) / length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(np.round(quad).astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    shrunk = offset.Execute(-distance)
    if not shrunk:
        return None
    return np.asarray(max(shrunk, key=len), dtype=np.float32)


def targets(words: Sequence[WordBox], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(probability target, loss mask) at `size` (h, w) for word polygons in that frame."""
    gt = np.zeros(size, dtype=np.float32)
    mask = np.ones(size, dtype=np.float32)
    for word in words:
        quad = word.quad
        sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
        kernel = None if word.ignore or min(sides) < MIN_WORD_SIDE else shrink(quad)
        if kernel is None or len(kernel) < 3:
            cv2.fillPoly(mask, [np.round(quad).astype(np.int32)], 0.0)
        else:
            cv2.fillPoly(gt, [np.round(kernel).astype(np.int32)], 1.0)
    return gt, mask


def sample(
    pixels: np.ndarray,
    words: Sequence[WordBox],
    rng: np.random.Generator,
    crop: int = 640,
    scale_range: tuple[float, float] = (0.7, 1.3),
    limit_side: int = STOCK_LIMIT_SIDE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training example: (normalised 3×crop×crop input, target, mask).

    The photo is scaled as the engine will scale it (short side to `limit_side`, the size the folder's
    detector is to read at) times a random factor, and a crop×crop window is cut, centred on a random
    word most of the time so that crops are not mostly background; what falls outside the photo is
    masked out.
    """
    h, w = pixels.shape[:2]
    scale = limit_side / min(h, w) * rng.uniform(*scale_range)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(
        pixels, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    readable = [wd for wd in words if not wd.ignore]
    if readable and rng.random() < 0.8:
        centre = readable[int(rng.integers(len(readable)))].quad.mean(axis=0) * scale
        x0 = int(np.clip(centre[0] - crop / 2 + rng.uniform(-crop / 4, crop / 4), 0, max(new_w - crop, 0)))
        y0 = int(np.clip(centre[1] - crop / 2 + rng.uniform(-crop / 4, crop / 4), 0, max(new_h - crop, 0)))
    else:
        x0 = int(rng.integers(max(new_w - crop, 0) + 1))
        y0 = int(rng.integers(max(new_h - crop, 0) + 1))
    window = resized[y0 : y0 + crop, x0 : x0 + crop]
    canvas = np.zeros((crop, crop, 3), dtype=np.uint8)
    canvas[: window.shape[0], : window.shape[1]] = window
    moved = [WordBox(wd.quad * scale - (x0, y0), wd.text) for wd in words]
    gt, mask = targets(moved, (crop, crop))
    mask[window.shape[0] :, :] = 0
    mask[:, window.shape[1] :] = 0
    return preprocess(canvas, (crop, crop))[0], gt, mask


def batches(
    photos: Sequence[Photo],
    batch_size: int,
    rng: np.random.Generator,
    crop: int = 640,
    limit_side: int = STOCK_LIMIT_SIDE,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """One pass over the photos in `rng`'s order, as (inputs, targets, masks) batches."""
    order = rng.permutation(len(photos))
    items: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for index in order:
        pixels = read_pixels(photos[index].path)
        if pixels is None:
            continue
        items.append(sample(pixels, photos[index].words, rng, crop, limit_side=limit_side))
        if len(items) == batch_size:
            yield _stack(items)
            items = []
    if items:
        yield _stack(items)


def _stack(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[Tensor, Tensor, Tensor]:
    x, gt, mask = (torch.from_numpy(np.stack(column)) for column in zip(*items, strict=True))
    return x, gt, mask


def loss(prob: Tensor, gt: Tensor, mask: Tensor, negative_ratio: float = 3.0) -> Tensor:
    """DB's map loss: balanced BCE with hard-negative mining plus dice, both under `mask`."""
    prob = prob[:, 0].clamp(1e-6, 1 - 1e-6)
    bce = torch.nn.functional.binary_cross_entropy(prob, gt, reduction="none")
    positive = gt * mask
    negative = (1 - gt) * mask
    n_pos = int(positive.sum().item())
    n_neg = min(int(negative.sum().item()), int(max(n_pos, 1) * negative_ratio))
    pos_loss = (bce * positive).sum()
    neg_loss, _ = (bce * negative).reshape(-1).topk(n_neg) if n_neg else (bce.new_zeros(0), None)
    balanced = (pos_loss + neg_loss.sum()) / (n_pos + n_neg + 1e-6)
    inter = (prob * gt * mask).sum()
    union = (prob * mask).sum() + (gt * mask).sum() + 1e-6
    return balanced + (1 - 2 * inter / union)
