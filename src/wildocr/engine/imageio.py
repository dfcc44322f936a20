"""Bytes in, BGR pixels out: every decoding rule (formats, EXIF, pixel limit) lives here."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 80_000_000  # ~9000x9000; anything larger is refused before it is decoded


class ImageDecodeError(ValueError):
    """The bytes are not an image wildocr can read; the message says why, for the `error` column."""


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, preview_side: int | None = None
) -> np.ndarray:
    """Decode image bytes to a BGR uint8 array, upright as people see it (EXIF orientation applied).

    The header is read first so that a decompression bomb is refused by its declared size, never decoded.
    Only the first frame of an animation or a multi-page file is read. `preview_side` (for thumbnails,
    never for OCR) lets the JPEG decoder skip detail: the result is then smaller than the photo, down to
    1/8 of it, but at least `preview_side` pixels on its longer side.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        # Pillow's own guard raises above ~179 MP while the header is parsed (and only warns from ~89 MP,
        # which the `max_pixels` check below covers). No `warnings.catch_warnings` here: it swaps the
        # process-wide filters and decoding runs in a thread pool.
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused: decompression bomb: {exc}") from None
    except Exception as exc:  # PIL raises many types for broken headers
        raise ImageDecodeError(f"unreadable image header: {exc}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"invalid size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"refused: {width}x{height} = {width * height} pixels is over the limit of {max_pixels}"
        )
    if preview_side and image.format == "JPEG":
        scale = min(1.0, preview_side / max(width, height))
        image.draft(image.mode, (max(1, round(width * scale)), max(1, round(height * scale))))
    try:
        image.seek(0)  # first frame of animations
        image = ImageOps.exif_transpose(image)
        image.load()
    except Exception as exc:
        raise ImageDecodeError(f"truncated or corrupt {image.format or 'image'} data: {exc}") from None
    try:
        return _to_bgr(image)
    except Exception as exc:  # an exotic mode Pillow opens but cannot convert
        raise ImageDecodeError(f"unsupported pixel format {image.mode!r}: {exc}") from None


def _to_bgr(image: Image.Image) -> np.ndarray:
    """Any PIL mode (16-bit, palette, alpha, CMYK, grey) to 8-bit BGR, alpha composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if image.mode == "F":
        grey = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = np.asarray(image.convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
