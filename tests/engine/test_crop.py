"""`engine/crop.py`: quads padded along their axes and cut out upright (pure functions, hand-built inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from wildocr.engine.crop import crop_quad, is_vertical, pad_quad


def test_pad_quad_grows_along_box_axes_and_clamps() -> None:
    quad = np.array([[100, 50], [300, 50], [300, 90], [100, 90]], dtype=np.float32)
    padded = pad_quad(quad, 0.015, (200, 400))
    # 1.5% of the 200 px width on each side, 1.5% of the 40 px height
    assert padded[0] == pytest.approx([97.0, 49.4])
    assert padded[2] == pytest.approx([303.0, 90.6])
    clamped = pad_quad(np.array([[0, 0], [399, 0], [399, 199], [0, 199]], dtype=np.float32), 0.1, (200, 400))
    assert clamped.min() >= 0 and clamped[:, 0].max() <= 399 and clamped[:, 1].max() <= 199


def test_crop_quad_rectifies_and_turns_vertical_text() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[10:30, 20:120] = 255
    quad = np.array([[20, 10], [120, 10], [120, 30], [20, 30]], dtype=np.float32)
    crop = crop_quad(image, quad)
    assert crop.shape[:2] == (20, 100) and crop.mean() > 250
    tall = np.array([[20, 10], [40, 10], [40, 90], [20, 90]], dtype=np.float32)
    assert is_vertical(tall)
    assert crop_quad(image, tall).shape[:2] == (20, 80)  # turned: text now runs left to right
