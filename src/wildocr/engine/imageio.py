"""Bytes in, BGR pixels out: every decoding rule (formats, EXIF, pixel limit) lives here."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from wildocr.engine import exif as exif_tags

DEFAULT_MAX_PIXELS = 80_000_000  # ~9000x9000; anything larger is refused before it is decoded


class ImageDecodeError(ValueError):
    """The bytes are not an image wildocr can read; the message says why, for the `error` column."""


# Pillow's `ImageOps.exif_transpose` table: what each EXIF Orientation asks for to show the photo upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(slots=True)
class DecodedPhoto:
    """Upright pixels and the photo's own metadata (`metadata.orientation` is what was applied)."""

    pixels: np.ndarray
    metadata: exif_tags.PhotoMetadata


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to a BGR uint8 array, upright as people see it (EXIF orientation applied)."""
    return decode_photo(data, max_pixels=max_pixels).pixels


def decode_photo(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedPhoto:
    """`decode_image` plus the EXIF metadata, read from the very tags the orientation was taken from.

    The header is read first so that a decompression bomb is refused by its declared size, never decoded.
    Only the first frame of an animation or a multi-page file is read. Broken or hostile EXIF never
    makes an error: the pixels are used as stored and the metadata says why (`exif.read_metadata`).
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
    try:
        image.seek(0)  # first frame of animations
        image.load()  # before the EXIF: a PNG may keep it after the pixels
    except Exception as exc:
        raise ImageDecodeError(f"truncated or corrupt {image.format or 'image'} data: {exc}") from None
    # Not ImageOps.exif_transpose: it re-serialises the EXIF, which raises on hostile tags.
    exif, exif_problem = exif_tags.load_exif(image)
    orientation, orientation_problem = exif_tags.read_orientation(exif)
    try:
        if orientation in _TRANSPOSE:
            image = image.transpose(_TRANSPOSE[orientation])
    except Exception as exc:
        raise ImageDecodeError(f"truncated or corrupt {image.format or 'image'} data: {exc}") from None
    try:
        pixels = _to_bgr(image)
    except Exception as exc:  # an exotic mode Pillow opens but cannot convert
        raise ImageDecodeError(f"unsupported pixel format {image.mode!r}: {exc}") from None
    metadata = exif_tags.read_metadata(exif, orientation=orientation)
    metadata.warnings[:0] = [w for w in (exif_problem, orientation_problem) if w]
    return DecodedPhoto(pixels, metadata)


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
