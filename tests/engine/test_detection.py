"""`engine/detection.py`: the post-processing of the probability map (pure functions, hand-built inputs)."""

from __future__ import annotations

import numpy as np

from wildocr.engine.detection import DetectorConfig, boxes_from_probability, order_clockwise


def test_order_clockwise_from_any_order() -> None:
    pts = np.array([[10, 20], [0, 0], [10, 0], [0, 20]], dtype=np.float32)
    assert order_clockwise(pts).tolist() == [[0, 0], [10, 0], [10, 20], [0, 20]]


def test_boxes_from_probability_finds_each_blob_in_image_pixels() -> None:
    prob = np.zeros((64, 128), dtype=np.float32)
    prob[10:20, 10:60] = 0.9
    prob[40:50, 70:120] = 0.8
    dets = boxes_from_probability(prob, (128, 256), DetectorConfig(unclip_ratio=1.0))
    assert len(dets) == 2
    first = np.asarray(dets[0].quad)
    assert first[:, 0].min() < 25 and first[:, 0].max() > 115  # scaled ×2 to image pixels
    assert 0.7 < dets[0].score <= 0.9  # mean probability inside the (dilated) contour
    assert dets[0].quad[0][1] < dets[1].quad[0][1]  # reading order
