"""Pictures of stored results for people: a photo's thumbnail, and the photo with its words drawn on it.

Rendered on demand from the source photo (through the one image loader's decode rules, so the pixels and
the EXIF orientation are exactly what the engine saw and the stored word boxes line up) and the `words`
rows read back by `wildocr.storage.query`. Nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wildocr.engine.imageio import DEFAULT_MAX_PIXELS, ImageDecodeError
from wildocr.engine.types import Word
from wildocr.pipeline.loader import load_image
from wildocr.render import encode_jpeg, fit_within, render_overlay
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

THUMBNAIL_SIDE = 200  # px, longer side: a page of 100 thumbnails stays around 1 MB
OVERLAY_SIDE = 1600  # px, longer side: sharp on a laptop screen, a fraction of a phone photo's bytes


def _load(
    image_uri: str,
    storage_options: StorageOptions,
    max_pixels: int,
    preview_side: int | None = None,
    page: int = 1,
) -> np.ndarray:
    """The photo's pixels (a document's `page`) through the one loader (its byte limit and header check
    included); FileNotFoundError if it is gone, ImageDecodeError for anything else that stops it being
    shown."""
    item = load_image(
        ObjectInfo(image_uri, -1, ""), storage_options, max_pixels, preview_side=preview_side, page=page
    )
    if item.image is not None:
        return item.image
    if item.error and item.error.startswith("read failed: FileNotFoundError"):
        raise FileNotFoundError(image_uri)
    raise ImageDecodeError(item.error or "not decoded")


def thumbnail_jpeg(
    image_uri: str,
    storage_options: StorageOptions = None,
    *,
    max_side: int = THUMBNAIL_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    page: int = 1,
) -> bytes:
    """A small JPEG of the photo (a document's `page`), longer side at most `max_side` (JPEGs decoded at
    a reduced scale)."""
    image = _load(image_uri, storage_options, max_pixels, preview_side=max_side, page=page)
    return encode_jpeg(fit_within(image, max_side), quality=80)


def overlay_jpeg(
    image_uri: str,
    words: Sequence[Word],
    storage_options: StorageOptions = None,
    *,
    max_side: int = OVERLAY_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    page: int = 1,
) -> bytes:
    """The photo (a document's `page`) with each word's box and text drawn at full resolution, then
    scaled to `max_side`."""
    image = _load(image_uri, storage_options, max_pixels, page=page)
    drawn = render_overlay(image, words)
    return encode_jpeg(fit_within(drawn, max_side), quality=85)
