"""Pictures of stored results for people: a photo's thumbnail, and the photo with its words drawn on it.

Rendered on demand from the source photo (through the one image loader's decode rules, so the pixels and
the EXIF orientation are exactly what the engine saw and the stored word boxes line up) and the `words`
rows read back by `wildocr.storage.query`. Nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from wildocr.engine.imageio import DEFAULT_MAX_PIXELS, decode_image
from wildocr.engine.types import ImageResult, Word
from wildocr.render import encode_jpeg, fit_within, render_overlay
from wildocr.storage import objectstore
from wildocr.storage.objectstore import StorageOptions

THUMBNAIL_SIDE = 200  # px, longer side: a page of 100 thumbnails stays around 1 MB
OVERLAY_SIDE = 1600  # px, longer side: sharp on a laptop screen, a fraction of a phone photo's bytes


def _load(image_uri: str, storage_options: StorageOptions, max_pixels: int, preview_side: int | None = None):
    """The photo's pixels; FileNotFoundError if it is gone, ImageDecodeError if it is not a readable image."""
    data = objectstore.read_bytes(image_uri, storage_options)
    return decode_image(data, max_pixels=max_pixels, preview_side=preview_side)


def thumbnail_jpeg(
    image_uri: str,
    storage_options: StorageOptions = None,
    *,
    max_side: int = THUMBNAIL_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """A small JPEG of the photo, longer side at most `max_side` (JPEGs decoded at a reduced scale)."""
    image = _load(image_uri, storage_options, max_pixels, preview_side=max_side)
    return encode_jpeg(fit_within(image, max_side), quality=80)


def overlay_jpeg(
    image_uri: str,
    words: Sequence[Word],
    storage_options: StorageOptions = None,
    *,
    max_side: int = OVERLAY_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """The photo with each word's box and text drawn at full resolution, then scaled to `max_side`."""
    image = _load(image_uri, storage_options, max_pixels)
    height, width = image.shape[:2]
    drawn = render_overlay(image, ImageResult(width=width, height=height, words=list(words)))
    return encode_jpeg(fit_within(drawn, max_side), quality=85)
