"""Overlay pictures of what was read: boxes on the photo, the text beside each box."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wildocr.engine.types import Word


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        import matplotlib

        path = f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf"
        return ImageFont.truetype(path, size)
    except Exception:  # a matplotlib without its fonts: Pillow's built-in font still draws ASCII
        return ImageFont.load_default(size)


def render_overlay(image_bgr: np.ndarray, words: Sequence[Word]) -> np.ndarray:
    """The photo with every word's quadrilateral, and its text and confidence drawn above the box."""
    canvas = image_bgr.copy()
    for word in words:
        pts = np.round(np.asarray(word.poly)).astype(np.int32)
        cv2.polylines(canvas, [pts], True, (0, 220, 0), 2, cv2.LINE_AA)
    pil = Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
    draw = ImageDraw.Draw(pil)
    size = max(12, min(canvas.shape[:2]) // 50)
    font = _font(size)
    for word in words:
        x, y = word.bbox[0], max(0.0, word.bbox[1] - size - 2)
        label = f"{word.text} {word.confidence:.2f}"
        box = draw.textbbox((x, y), label, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((x, y), label, fill=(255, 255, 0), font=font)
    return cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)


def fit_within(image_bgr: np.ndarray, max_side: int) -> np.ndarray:
    """The image scaled down (never up) so that its longer side is at most `max_side` pixels."""
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    height, width = image_bgr.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image_bgr
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(image_bgr: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of a BGR image (for pictures sent to a web browser: small and quick to decode)."""
    ok, buffer = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()
