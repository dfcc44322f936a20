"""The 0°/180° text-orientation classifier that ships with PP-OCR: which crops may be upside-down."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from wildocr.engine.backends import Session

CLS_SHAPE = (48, 192)  # height, width the classifier was trained at


class OrientationClassifier:
    def __init__(self, session: Session, threshold: float = 0.9, batch_size: int = 64) -> None:
        self.session = session
        self.threshold = threshold
        self.batch_size = batch_size
        self._input = session.get_inputs()[0].name

    def _normalise(self, crop: np.ndarray) -> np.ndarray:
        h, w = crop.shape[:2]
        out = np.zeros((3, *CLS_SHAPE), dtype=np.float32)
        width = min(CLS_SHAPE[1], max(1, int(np.ceil(CLS_SHAPE[0] * w / max(h, 1)))))
        resized = cv2.resize(crop, (width, CLS_SHAPE[0])).astype(np.float32)
        out[:, :, :width] = resized.transpose(2, 0, 1) * (2.0 / 255.0) - 1.0
        return out

    def upside_down(self, crops: Sequence[np.ndarray]) -> list[bool]:
        """Which crops the classifier confidently reads as rotated by 180°."""
        flags: list[bool] = []
        for start in range(0, len(crops), self.batch_size):
            batch = np.stack([self._normalise(c) for c in crops[start : start + self.batch_size]])
            probs = self.session.run(None, {self._input: batch})[0]
            flags.extend(bool(p[1] > self.threshold and p[1] > p[0]) for p in probs)
        return flags
