"""DB (differentiable binarisation) text detection: pre-processing and probability map → quadrilaterals.

The network is ONNX; everything around it is here so that it can be tested without a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import cv2
import numpy as np
import pyclipper

from wildocr.engine.types import Detection, Quad

if TYPE_CHECKING:
    from wildocr.engine.backends import Session


@dataclass(frozen=True)
class DetectorConfig:
    """The DB detector's settings (`EngineConfig.detector`; `--option det_KEY=VALUE`).

    Attributes:
        limit_side: the network input's short side is scaled to this, up or down
            (`resize_for_detection`): small print needs pixels, large inputs cost time. 0 = the
            detector's own size: `STOCK_LIMIT_SIDE` for the stock weights, the size a model folder's
            detector was trained at when its manifest names one (`models.det.limit_side`); the engine
            resolves it when it loads.
        max_side: ... while its long side stays at most this, which bounds the work per image.
        thresh: probability for a pixel of the map to count as text.
        box_thresh: mean probability inside a box to keep it (drops faint false regions).
        unclip_ratio: DB boxes are shrunk text kernels; they grow back by area * ratio / perimeter.
        min_size: shortest box side, in network pixels, to keep.
        max_candidates: regions looked at per image at most.
        precision: auto | fp32 | int8. int8 (quantised once at load time, cached: engine/quantize.py)
            detects faster on CPU at the same accuracy (docs/benchmarks.md); auto = int8 on CPU, fp32 on
            GPU (CUDA gains nothing from these QDQ models).
    """

    limit_side: int = 0
    max_side: int = 2400
    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    min_size: float = 3.0
    max_candidates: int = 1000
    precision: str = "auto"  # auto | fp32 | int8


# The input short side the stock PP-OCRv6 detector reads best at (its post-processing was tuned there).
STOCK_LIMIT_SIDE = 736

# Normalisation PP-OCR's detector was trained with (RGB order, ImageNet statistics).
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0


def resize_for_detection(height: int, width: int, cfg: DetectorConfig) -> tuple[int, int]:
    """Network input size: short side scaled to `limit_side` (up or down), long side capped, ×32."""
    if cfg.limit_side <= 0:
        raise ValueError(f"limit_side must be a size in pixels (the engine resolves 0), got {cfg.limit_side}")
    scale = cfg.limit_side / min(height, width)
    scale = min(scale, cfg.max_side / max(height, width))
    new_h = max(32, round(height * scale / 32) * 32)
    new_w = max(32, round(width * scale / 32) * 32)
    return new_h, new_w


def preprocess(image_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BGR uint8 → normalised NCHW float32 (RGB order) at `size` (h, w), C-contiguous.

    Each plane is written once, straight into the network's layout: a transposed view of an HWC array
    costs a float copy here and another inside ONNX Runtime (about 3x the CPU time of this, per photo).
    The arithmetic is the same float32 (x - mean) / std, so the values are identical.
    """
    h, w = size
    interp = cv2.INTER_AREA if h < image_bgr.shape[0] else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (w, h), interpolation=interp)
    out = np.empty((1, 3, h, w), dtype=np.float32)
    for c in range(3):  # RGB planes from the BGR channels
        plane = out[0, c]
        np.subtract(resized[:, :, 2 - c], _MEAN[c], out=plane, dtype=np.float32)
        plane /= _STD[c]
    return out


def order_clockwise(points: np.ndarray) -> np.ndarray:
    """Four points → (tl, tr, br, bl), robust for boxes tilted up to 45°."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def _box_score(prob: np.ndarray, contour: np.ndarray) -> float:
    """Mean probability inside the contour (the slow-but-right DB score, on the contour's bounding box)."""
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [contour.reshape(-1, 2) - (x, y)], 1)
    return float(cv2.mean(prob[y : y + h, x : x + w], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray | None:
    area = cv2.contourArea(box)
    length = cv2.arcLength(box, True)
    if length == 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    expanded = offset.Execute(area * ratio / length)
    if len(expanded) != 1:
        return None
    return np.asarray(expanded[0], dtype=np.float32)


def boxes_from_probability(
    prob: np.ndarray, image_size: tuple[int, int], cfg: DetectorConfig
) -> list[Detection]:
    """Probability map (H×W in network pixels) → detections in image pixels."""
    img_h, img_w = image_size
    map_h, map_w = prob.shape
    bitmap: np.ndarray = (prob > cfg.thresh).astype(np.uint8)
    bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    contours = contours[: cfg.max_candidates]
    sx, sy = img_w / map_w, img_h / map_h
    detections: list[Detection] = []
    for contour in contours:
        if len(contour) < 3:
            continue
        rect = cv2.minAreaRect(contour)
        if min(rect[1]) < cfg.min_size:
            continue
        score = _box_score(prob, contour)
        if score < cfg.box_thresh:
            continue
        grown = _unclip(cv2.boxPoints(rect), cfg.unclip_ratio)
        if grown is None:
            continue
        rect = cv2.minAreaRect(grown)
        if min(rect[1]) < cfg.min_size + 2:
            continue
        quad = order_clockwise(cv2.boxPoints(rect))
        quad[:, 0] = np.clip(quad[:, 0] * sx, 0, img_w - 1)
        quad[:, 1] = np.clip(quad[:, 1] * sy, 0, img_h - 1)
        if np.linalg.norm(quad[0] - quad[1]) <= 3 or np.linalg.norm(quad[0] - quad[3]) <= 3:
            continue
        corners = cast(Quad, tuple(map(tuple, quad.round(1).tolist())))
        detections.append(Detection(quad=corners, score=round(score, 4)))
    return sort_reading_order(detections)


def sort_reading_order(detections: list[Detection]) -> list[Detection]:
    """Top-to-bottom, then left-to-right within a row (rows: boxes whose top-left y differ < half a box)."""
    if not detections:
        return detections
    items = sorted(detections, key=lambda d: (d.quad[0][1], d.quad[0][0]))
    rows: list[list[Detection]] = [[items[0]]]
    for det in items[1:]:
        ref = rows[-1][0]
        height = max(ref.quad[3][1] - ref.quad[0][1], 1.0)
        if abs(det.quad[0][1] - ref.quad[0][1]) < 0.5 * height:
            rows[-1].append(det)
        else:
            rows.append([det])
    return [d for row in rows for d in sorted(row, key=lambda d: d.quad[0][0])]


class TextDetector:
    """The DB detector over one inference session (any backend)."""

    def __init__(self, session: Session, cfg: DetectorConfig) -> None:
        self.session = session
        self.cfg = cfg
        self._input = session.get_inputs()[0].name

    def probability_map(self, image_bgr: np.ndarray) -> np.ndarray:
        height, width = image_bgr.shape[:2]
        size = resize_for_detection(height, width, self.cfg)
        out = self.session.run(None, {self._input: preprocess(image_bgr, size)})[0]
        return out[0, 0]

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        prob = self.probability_map(image_bgr)
        return boxes_from_probability(prob, image_bgr.shape[:2], self.cfg)
