"""Bytes in, BGR pixels out: every decoding rule (formats, EXIF, pixel limit, corrupt data) lives here.

Untrusted bytes only ever reach the Pillow plugins of `RASTER_FORMATS`: Pillow's other plugins include
EPS (which runs Ghostscript) and IPTC (which re-opens an embedded file with any plugin). Nothing here starts
a program or opens another file: AVIF (libavif) and JPEG 2000 (OpenJPEG) decode inside Pillow's own wheel,
HEIC/HEIF inside pillow-heif's (libheif with libde265), all in this process. PDF pages are rendered by the
pdfium library inside pypdfium2's wheel, in this process too.

An object is read as pages (`open_pages`): a PDF or a multi-page TIFF has one per page, every other image one.
"""

from __future__ import annotations

import io
import math
import struct
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import pillow_heif
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
import simplejpeg
from PIL import Image, UnidentifiedImageError

from wildocr.engine import exif as exif_tags

DEFAULT_MAX_PIXELS = 80_000_000  # ~9000x9000; anything larger is refused before it is decoded
# Pages of one document (PDF, multi-page TIFF) read at most; the rest get one error row (docs/operations.md).
DEFAULT_MAX_PAGES = 50
# PDF pages are rendered at 200 dpi: body text (10 pt) is ~28 px tall, about what the recognizer's 48 px
# input wants, and an A4 or Letter page (1654x2339, 1700x2200) stays within the detector's default long
# side of 2400 px (engine.detection.DetectorConfig.max_side). A larger page (A3, a poster) is rendered
# with its longer side at PDF_MAX_SIDE, so a page is at most 2400x2400 pixels (17 MB as BGR).
PDF_DPI = 200
PDF_MAX_SIDE = 2400
# PDFium is not thread-safe and the loader decodes in a thread pool: one call into it at a time.
_PDFIUM_LOCK = threading.Lock()
# The only Pillow plugins that see untrusted bytes: pure in-process raster decoders. (Pillow opens JPEGs
# with multi-picture data as MPO through the JPEG plugin; GIF is here for animated GIFs named .png.) AVIF
# before HEIF: both accept the generic `mif1`/`msf1` brands, and Pillow's AVIF plugin hands an HEVC file on.
RASTER_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF", "HEIF", "JPEG2000")
# pillow-heif's plugin, once per process; HEIF only (it has no AVIF opener: Pillow's is the one). Embedded
# thumbnails, depth maps and auxiliary images are never read.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
# libjpeg warnings that mean the pixels are not all there (Pillow decodes on past them in silence).
_CORRUPT_JPEG = ("Corrupt JPEG data", "Premature end of JPEG file")
_BENIGN_JPEG = ("bad ICC marker",)  # metadata only: the pixels are intact
# Pillow's `ImageOps.exif_transpose` table: what each EXIF Orientation asks for to show the photo upright.
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageDecodeError(ValueError):
    """The bytes are not an image wildocr can read; the message says why, for the `error` column."""


@dataclass(slots=True)
class DecodedPhoto:
    """Upright pixels and the photo's own metadata (`metadata.orientation` is what was applied)."""

    pixels: np.ndarray
    metadata: exif_tags.PhotoMetadata


@dataclass(frozen=True, slots=True)
class Pages:
    """An object as the pages wildocr reads: the first `count` of its `total`, each decoded on demand
    (`decode`), so a 50-page document never holds more than the page being read."""

    data: bytes
    kind: str  # "PDF", "TIFF" (more than one page) or "image" (one page: every other format)
    total: int
    count: int
    max_pixels: int

    def decode(self, index: int, *, preview_side: int | None = None) -> DecodedPhoto:
        """Page `index` (0-based) as upright BGR pixels; ImageDecodeError says why it cannot be."""
        if not 0 <= index < self.count:
            raise IndexError(f"page {index + 1} of a document read to page {self.count}")
        if self.kind == "PDF":
            return _render_pdf_page(self.data, index, self.max_pixels)
        return decode_photo(self.data, max_pixels=self.max_pixels, preview_side=preview_side, page=index)

    @property
    def over_limit(self) -> str | None:
        """The error of the pages past the page limit (None when every page is read)."""
        if self.total <= self.count:
            return None
        rest = (
            f"page {self.total}" if self.total == self.count + 1 else f"pages {self.count + 1}-{self.total}"
        )
        return (
            f"refused: the document has {self.total} pages, over the page limit of {self.count}: "
            f"{rest} not read"
        )


def is_pdf(data: bytes) -> bool:
    """PDF by its bytes: `%PDF-` within the first 1024 bytes, where readers look for it."""
    return b"%PDF-" in data[:1024]


def open_pages(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_pages: int = DEFAULT_MAX_PAGES
) -> Pages:
    """The pages of an object, known by its bytes: a PDF's pages, a TIFF's pages, else one page.

    An encrypted or damaged PDF raises ImageDecodeError here ("PDF is encrypted", "PDF is damaged: ...");
    the other formats' errors come from `Pages.decode` (the first page is `decode_photo` itself).
    """
    if max_pages < 1:
        raise ValueError(f"max_pages must be >= 1, got {max_pages!r}")
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    if is_pdf(data):
        with _PDFIUM_LOCK:
            document = _open_pdf(data)
            try:
                total = len(document)
            finally:
                document.close()
        if total < 1:
            raise ImageDecodeError("PDF is damaged: it has no pages")
        return Pages(data, "PDF", total, min(total, max_pages), max_pixels)
    total = 1
    try:
        image = Image.open(io.BytesIO(data), formats=("TIFF",))
        total = max(1, int(getattr(image, "n_frames", 1)))
    except Exception:  # not a TIFF, or a broken one: decode_photo gives the error
        pass
    return Pages(data, "TIFF" if total > 1 else "image", total, min(total, max_pages), max_pixels)


def _open_pdf(data: bytes) -> pdfium.PdfDocument:
    """A PDF document (call with the lock held); its errors named for the `error` column."""
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium_raw.FPDF_ERR_PASSWORD, pdfium_raw.FPDF_ERR_SECURITY):
            raise ImageDecodeError("PDF is encrypted: it needs a password to be read") from None
        raise ImageDecodeError(f"PDF is damaged: {exc}") from None


def _render_pdf_page(data: bytes, index: int, max_pixels: int) -> DecodedPhoto:
    """One PDF page rendered at PDF_DPI (longer side at most PDF_MAX_SIDE), white background, BGR.

    The document is opened again for each page: no PDFium object outlives the lock or crosses threads.
    """
    with _PDFIUM_LOCK:
        document = _open_pdf(data)
        try:
            page = document[index]
            width_pt, height_pt = page.get_size()
            if not (width_pt > 0 and height_pt > 0):
                raise ImageDecodeError(f"PDF is damaged: page {index + 1} has no size")
            # pdfium sizes the bitmap by rounding up: 1e-7 less keeps a page of 64 px at 200 dpi 64 px wide
            # (float noise in 23.04 pt x 200/72 would make it 65), and never moves a real fraction.
            scale = min(PDF_DPI / 72.0, PDF_MAX_SIDE / max(width_pt, height_pt)) * (1 - 1e-7)
            _check_size((math.ceil(width_pt * scale), math.ceil(height_pt * scale)), max_pixels)
            bitmap = page.render(scale=scale)  # pdfium's BGR, /Rotate applied
            pixels = np.ascontiguousarray(bitmap.to_numpy()[:, :, :3]).copy()
        except pdfium.PdfiumError as exc:
            raise ImageDecodeError(f"PDF is damaged: page {index + 1}: {exc}") from None
        finally:
            document.close()
    return DecodedPhoto(pixels, exif_tags.read_metadata(None))


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, preview_side: int | None = None
) -> np.ndarray:
    """Decode image bytes to a BGR uint8 array, upright as people see it (EXIF orientation applied)."""
    return decode_photo(data, max_pixels=max_pixels, preview_side=preview_side).pixels


def decode_photo(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, preview_side: int | None = None, page: int = 0
) -> DecodedPhoto:
    """`decode_image` plus the EXIF metadata, read from the very tags the orientation was taken from.

    The header is read first so that a decompression bomb is refused by its declared size, never decoded.
    Only the first frame of an animation is read (of a HEIF, its primary image); `page` picks a page of a
    multi-page TIFF (`open_pages` counts them). PDFs are read by `open_pages`, not here.
    Broken or hostile EXIF never makes an error: the pixels are used as stored and the metadata says why
    (`exif.read_metadata`).
    `preview_side` (for thumbnails, never for OCR) lets the JPEG decoder skip detail: the result is then
    smaller than the photo, down to 1/8 of it, but at least `preview_side` pixels on its longer side.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        # Pillow's own guard raises above ~179 MP while the header is parsed (and only warns from ~89 MP,
        # which the `max_pixels` check below covers). No `warnings.catch_warnings` here: it swaps the
        # process-wide filters and decoding runs in a thread pool.
        image: Image.Image = Image.open(io.BytesIO(data), formats=RASTER_FORMATS)
    except UnidentifiedImageError:
        raise ImageDecodeError(_unsupported(data)) from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused: decompression bomb: {exc}") from None
    except Exception as exc:  # PIL raises many types for broken headers
        raise ImageDecodeError(f"unreadable image header: {exc}") from None
    fmt = image.format
    if page:
        try:
            image.seek(page)  # a TIFF page: its own size, mode and tags
        except Exception as exc:
            raise ImageDecodeError(
                f"truncated or corrupt {fmt or 'image'} data: page {page + 1}: {exc}"
            ) from None
    _check_size(image.size, max_pixels)
    if fmt == "JPEG2000":
        check_jpeg2000_codestream(data, max_pixels=max_pixels, whole=True)
    if preview_side and fmt == "JPEG":
        width, height = image.size
        scale = min(1.0, preview_side / max(width, height))
        image.draft(image.mode, (max(1, round(width * scale)), max(1, round(height * scale))))
    try:
        if fmt != "HEIF" and not page:  # a HEIF opens at its primary image, which need not be the first
            image.seek(0)  # first frame of animations
        image.load()  # before the EXIF: a PNG may keep it after the pixels
    except Exception as exc:
        raise ImageDecodeError(f"truncated or corrupt {fmt or 'image'} data: {exc}") from None
    if fmt in ("JPEG", "MPO"):
        check_jpeg_data(data)  # what Pillow decoded past in silence
    # Not ImageOps.exif_transpose: it re-serialises the EXIF, which raises on hostile tags. AVIF's own turn
    # (irot/imir) comes as this EXIF tag; libheif turns a HEIF itself and pillow-heif then sets the tag to 1.
    exif, exif_problem = exif_tags.load_exif(image)
    orientation, orientation_problem = exif_tags.read_orientation(exif)
    try:
        if orientation in ORIENTATION_TRANSPOSE:
            image = image.transpose(ORIENTATION_TRANSPOSE[orientation])
    except Exception as exc:
        raise ImageDecodeError(f"truncated or corrupt {fmt or 'image'} data: {exc}") from None
    try:
        pixels = _to_bgr(image)
    except Exception as exc:  # an exotic mode Pillow opens but cannot convert
        raise ImageDecodeError(f"unsupported pixel format {image.mode!r}: {exc}") from None
    metadata = exif_tags.read_metadata(exif, orientation=orientation)
    metadata.warnings[:0] = [w for w in (exif_problem, orientation_problem) if w]
    return DecodedPhoto(pixels, metadata)


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"invalid size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"refused: {width}x{height} = {width * height} pixels is over the limit of {max_pixels}"
        )


def _unsupported(data: bytes) -> str:
    """The error for bytes no raster plugin could open: names the format when Pillow knows it by its magic
    bytes (only the plugins' pure prefix checks run, never their decoders). An allowed format whose header
    is cut short or damaged (an AVIF or HEIF upload that stopped early) is unreadable, not unsupported."""
    Image.init()
    prefix = data[:16]
    for allowed in (True, False):
        for name, (_, accept) in Image.OPEN.items():
            if (name in RASTER_FORMATS) != allowed or accept is None:
                continue
            try:
                known = accept(prefix)
            except Exception:
                continue
            if known is True or (known and not isinstance(known, str)):
                if allowed:
                    return f"unreadable {name} header: truncated or corrupt"
                return f"unsupported format: {name}"
    return "not an image (unrecognised format)"


def check_header(head: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int] | None:
    """(format, width, height) from the first bytes of an object, so that a huge object is refused before
    it is read whole; ImageDecodeError for what the whole object would be refused for anyway (a format
    that is not allowed, a size over the limit). None when these bytes are not enough to tell."""
    if not head:
        return None
    try:
        image = Image.open(io.BytesIO(head), formats=RASTER_FORMATS)
    except UnidentifiedImageError:
        message = _unsupported(head)
        if message.startswith("unsupported format"):
            raise ImageDecodeError(message) from None
        return None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused: decompression bomb: {exc}") from None
    except Exception:  # the header runs past these bytes (a long EXIF block, TIFF offsets): read it all
        return None
    _check_size(image.size, max_pixels)
    if image.format == "JPEG2000":
        check_jpeg2000_codestream(head, max_pixels=max_pixels, whole=False)
    return str(image.format), image.size[0], image.size[1]


def check_jpeg2000_codestream(data: bytes, *, max_pixels: int, whole: bool) -> None:
    """What Pillow does not check in a JPEG 2000 file before OpenJPEG decodes it: the size in the
    codestream's own SIZ marker (Pillow takes a JP2's size from its `ihdr` box only), and, for the whole
    file, the end-of-codestream marker (OpenJPEG decodes a codestream cut before its first tile as blank)."""
    codestream = _j2k_codestream(data)
    if codestream is None or codestream[:4] != b"\xff\x4f\xff\x51" or len(codestream) < 24:
        if whole:
            raise ImageDecodeError("truncated or corrupt JPEG2000 data: no codestream")
        return
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", codestream, 8)
    _check_size((xsiz - xosiz, ysiz - yosiz), max_pixels)
    if whole and not codestream.endswith(b"\xff\xd9"):
        raise ImageDecodeError("truncated or corrupt JPEG2000 data: the codestream has no end marker")


def _j2k_codestream(data: bytes) -> bytes | None:
    """The codestream of a bare J2K file, or the content of a JP2 file's `jp2c` box (None: no such box)."""
    if data.startswith(b"\xff\x4f\xff\x51"):
        return data
    at = 0
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if length == 1:  # a 64-bit length follows the type
            if at + 16 > len(data):
                return None
            length, header = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif length == 0:  # the last box: to the end of the file
            length = len(data) - at
        if length < header:
            return None
        if kind == b"jp2c":
            return data[at + header : at + length]
        at += length
    return None


def check_jpeg_data(data: bytes) -> None:
    """Refuse a JPEG whose entropy-coded data is corrupt or ends early (a block of zeros in the scan, a
    stray end marker): libjpeg only warns, Pillow fills the rest in and says nothing. The check is a
    strict libjpeg-turbo pass at 1/8 scale (every Huffman code is still read; ~12% of a full decode)."""
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=1, min_width=1, min_factor=8, strict=True)
    except ValueError as exc:
        message = str(exc)
        if any(w in message for w in _CORRUPT_JPEG) and not any(b in message for b in _BENIGN_JPEG):
            detail = message.removeprefix("Corrupt JPEG data: ")
            raise ImageDecodeError(f"corrupt JPEG data: {detail[:1].lower()}{detail[1:]}") from None
        # anything else (a JPEG flavour libjpeg-turbo has no strict path for): Pillow's decode decides


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
