"""`wildocr train verifier`: refit the word verifier (engine/verify.py) to a model folder's readings.

The verifier's two logistic models judge a word from how sure the recognizer and the detector were. A
fine-tuned recognizer is surer (or less sure) than the stock one at the same error rate, so the stock
models, fitted to the stock weights, keep the wrong words and drop the right ones (docs/accuracy.md).
This reads labelled photos with the folder's own models, labels every candidate word against the
annotation (its box matches an annotated word with IoU > 0.5: text; and the same text, case and outer
punctuation aside: read right; words over a `###` region are left out, as ICDAR scoring does) and fits
both models. Needs no PyTorch: NumPy, and shapely for the polygon overlaps (the `train` extra).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wildocr.engine import EngineConfig, OCREngine
from wildocr.engine.types import Word
from wildocr.engine.verify import FEATURES, LogisticModel, Verifier
from wildocr.train.data import Photo, WordBox, load_dataset, read_pixels
from wildocr.train.folder import add_verifier
from wildocr.train.score import MIN_IOU, comparable_text, on_unreadable, polygon, polygon_iou

# Ridge on standardised features: 9 weights per model for a few thousand labelled words.
L2 = 1.0


def label(words: Sequence[Word], annotated: Sequence[WordBox]) -> list[tuple[int, int] | None]:
    """(is text, read right) per word; None for a word lying over an unreadable (`###`) region."""
    care = [(polygon(w.quad.tolist()), w.text) for w in annotated if not w.ignore]
    ignored = [polygon(w.quad.tolist()) for w in annotated if w.ignore]
    labels: list[tuple[int, int] | None] = []
    for word in words:
        poly = polygon(word.poly)
        if on_unreadable(poly, ignored):
            labels.append(None)
            continue
        matched = [text for g, text in care if polygon_iou(poly, g) > MIN_IOU]
        read_right = any(comparable_text(t) == comparable_text(word.text) for t in matched)
        labels.append((int(bool(matched)), int(read_right)))
    return labels


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2) -> LogisticModel:
    """L2-regularised logistic regression (Newton steps) on standardised features, folded back to raw ones."""
    center, scale = x.mean(0), x.std(0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - center) / scale])
    beta = np.zeros(z.shape[1])
    # (a whisker on the bias too, so that a set with one class only still gives finite numbers)
    ridge = np.diag(np.r_[1e-6, np.full(len(beta) - 1, l2)])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-z @ beta))
        gradient = z.T @ (p - y) + ridge @ beta
        hessian = z.T @ (z * (p * (1 - p))[:, None]) + ridge
        beta -= np.linalg.solve(hessian, gradient)
    weights = beta[1:] / scale
    bias = beta[0] - float((beta[1:] * center / scale).sum())
    return LogisticModel(weights=tuple(round(float(w), 4) for w in weights), bias=round(float(bias), 4))


def read_candidates(engine: OCREngine, image: np.ndarray) -> list[tuple[Word, np.ndarray]]:
    """A photo's candidate words above the confidence floor, with their verifier features: what the
    verifier judges in production (the engine's own detection, crops and word splitting)."""
    detections = engine.detect(image)
    readings = engine.recognize(engine.crop(image, detections))
    return [
        (word, features)
        for line in engine.candidate_words(image.shape[:2], detections, readings)
        for word, features in line
        if word.confidence >= engine.config.min_confidence
    ]


Candidates = list[tuple[Word, np.ndarray]]


def read_photos(engine: OCREngine, photos: Sequence[Photo]) -> list[tuple[Photo, Candidates]]:
    """Each photo with its candidate words (`read_candidates`); a photo that cannot be decoded is skipped
    with a warning, as training skips it."""
    read = []
    for photo in photos:
        image = read_pixels(photo.path)
        if image is not None:
            read.append((photo, read_candidates(engine, image)))
    return read


def labelled_rows(read: Sequence[tuple[Photo, Candidates]]) -> list[tuple[np.ndarray, int, int]]:
    """(features, is text, read right) of every candidate word that is scored (not over a `###` region)."""
    rows: list[tuple[np.ndarray, int, int]] = []
    for photo, candidates in read:
        labels = label([w for w, _ in candidates], photo.words)
        rows += [(f, *lab) for (_, f), lab in zip(candidates, labels, strict=True) if lab is not None]
    return rows


def fit(rows: Sequence[tuple[np.ndarray, int, int]]) -> Verifier:
    x = np.array([r[0] for r in rows]).reshape(len(rows), len(FEATURES))
    return Verifier(
        text=fit_logistic(x, np.array([r[1] for r in rows], dtype=float)),
        reading=fit_logistic(x, np.array([r[2] for r in rows], dtype=float)),
    )


# Fewer labelled words than this (about ten per weight of each model) cannot pin the weights down; the
# stock verifier is then the better bet.
MIN_LABELLED = 100


def train_verifier(data: Sequence[str | Path], folder: Path) -> dict[str, Any]:
    """Read `data` (photos with word polygons) with the model folder `folder`'s models, fit the verifier
    to those readings and write it into the folder (`verifier.json`, named in its manifest)."""
    started = time.monotonic()
    sets = [load_dataset(p) for p in data]
    crops = [d.path for d in sets if d.kind == "crops"]
    if crops:
        raise ValueError(f"{crops[0]}: the verifier is fitted on whole photos (words in context), not crops")
    engine = OCREngine(EngineConfig(verify_words=False, model_dir=str(folder)))
    photos = [p for d in sets for p in d.photos]
    read = read_photos(engine, photos)
    rows = labelled_rows(read)
    if len(rows) < MIN_LABELLED:
        raise ValueError(
            f"only {len(rows)} labelled words were read from the photos; the verifier needs "
            f"{MIN_LABELLED} or more (more photos)"
        )
    verifier = fit(rows)
    y = np.array([(r[1], r[2]) for r in rows], dtype=float)
    fitted = {
        "data": [d.describe() for d in sets],
        "photos": len(read),
        "undecodable": len(photos) - len(read),
        "words": sum(len(c) for _, c in read),
        "labelled": len(rows),
        "text_share": round(float(y[:, 0].mean()), 4),
        "read_right_share": round(float(y[:, 1].mean()), 4),
        "seconds": round(time.monotonic() - started, 1),
    }
    add_verifier(folder, verifier, fitted)
    return {"out": str(folder), **fitted}
