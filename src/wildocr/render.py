"""Overlay pictures of what was read: boxes on the photo, the text beside each box."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wildocr.engine.types import ImageResult


def _font(size: int) -> ImageFont.ImageFont:
    try:
        import matplotlib

        path = f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf"
        return ImageFont.truetype(path, size)
    except Exception:  # matplotlib is optional: Pillow's built-in font still draws ASCII
        return ImageFont.load_default(size)


def render_overlay(image_bgr: np.ndarray, result: ImageResult) -> np.ndarray:
    """The photo with every word's quadrilateral, and its text and confidence drawn above the box."""
    canvas = image_bgr.copy()
    for word in result.words:
        pts = np.round(np.asarray(word.poly)).astype(np.int32)
        cv2.polylines(canvas, [pts], True, (0, 220, 0), 2, cv2.LINE_AA)
    pil = Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
    draw = ImageDraw.Draw(pil)
    size = max(12, min(canvas.shape[:2]) // 50)
    font = _font(size)
    for word in result.words:
        x, y = word.bbox[0], max(0.0, word.bbox[1] - size - 2)
        label = f"{word.text} {word.confidence:.2f}"
        box = draw.textbbox((x, y), label, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((x, y), label, fill=(255, 255, 0), font=font)
    return cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)
