"""`engine/detection.py`: the post-processing of the probability map (pure functions, hand-built inputs)."""

from __future__ import annotations

import cv2
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


def test_preprocess_writes_the_network_layout_with_the_reference_values() -> None:
    """RGB-ordered, ImageNet-normalised NCHW float32, contiguous (no copy left for ONNX Runtime), and the
    same values as the plain formula on the resized image, so the detector's input is unchanged."""
    from wildocr.engine.detection import _MEAN, _STD, preprocess

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    for size in ((64, 96), (192, 320)):  # down (INTER_AREA) and up (INTER_LINEAR)
        x = preprocess(image, size)
        interp = cv2.INTER_AREA if size[0] < 90 else cv2.INTER_LINEAR
        rgb = cv2.cvtColor(cv2.resize(image, size[::-1], interpolation=interp), cv2.COLOR_BGR2RGB)
        reference = ((rgb.astype(np.float32) - _MEAN) / _STD).transpose(2, 0, 1)[None]
        assert x.shape == (1, 3, *size) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
        assert np.array_equal(x, reference)
