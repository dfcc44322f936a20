"""`engine/imageio.py`: bytes that are not a photo (bad bytes, EPS, corrupt JPEG scans) give one clear
error; the phone and archive formats (AVIF, HEIC/HEIF, JPEG 2000) read like the others."""

from __future__ import annotations

import io
import struct

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from include.sample_data import generate
from tests.helpers import (
    DOS_EPS,
    EPS,
    blank_pdf,
    corrupt_scans,
    encode,
    encrypted_pdf,
    gradient,
    pdf_bytes,
    tiff_bytes,
)
from wildocr.engine import imageio
from wildocr.engine.imageio import ImageDecodeError, check_header, decode_image, decode_photo, open_pages
from wildocr.samples import PhotoExif, stored_for_orientation

SEED = 2  # image 0: 1024x768 with 11 words


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"hello, not a picture", "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 20, "unreadable|truncated|not an image"),
    ],
)
def test_decode_rejects_bad_bytes_with_a_message(payload: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(payload)


def test_eps_is_refused_in_process_without_a_temp_path_in_the_message(tmp_path):
    for data in (EPS, DOS_EPS):
        with pytest.raises(ImageDecodeError) as info:
            decode_image(data)
        assert str(info.value) == "unsupported format: EPS"
        with pytest.raises(ImageDecodeError, match=r"^unsupported format: EPS$"):
            check_header(data[:256])
    # a format Pillow does not know at all keeps the old message
    with pytest.raises(ImageDecodeError, match=r"^not an image \(unrecognised format\)$"):
        decode_image(b"hello, a text file")


def test_corrupt_jpeg_scans_are_errors_but_a_clean_progressive_jpeg_is_not(tmp_path):
    truth = generate(str(tmp_path), count=1, seed=SEED)[0]
    photo = (tmp_path / truth["image"]).read_bytes()
    for bad in corrupt_scans(photo):
        with pytest.raises(ImageDecodeError, match=r"^corrupt JPEG data: "):
            decode_image(bad)
    progressive = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(progressive, "JPEG", progressive=True, quality=90)
    cmyk = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("CMYK").save(cmyk, "JPEG", quality=90)
    for good in (photo, progressive.getvalue(), cmyk.getvalue()):
        assert decode_image(good).shape == (768, 1024, 3)


# Phone and archive formats: AVIF, HEIC/HEIF (pillow-heif), JPEG 2000 ----------------------------------------
# Every input is made here with the encoders in the Pillow and pillow-heif wheels (`tests.helpers.encode`).

NEW_FORMATS = ["AVIF", "HEIF", "JPEG2000", "J2K"]  # J2K: a bare JPEG 2000 codestream, no JP2 boxes


def _mad(bgr: np.ndarray, rgb: np.ndarray) -> float:
    return float(np.abs(bgr[..., ::-1].astype(np.int16) - rgb.astype(np.int16)).mean())


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_phone_and_archive_formats_decode_to_the_photo(fmt):
    image = gradient()
    data = encode(image, fmt)
    photo = decode_photo(data)
    assert photo.pixels.shape == (40, 64, 3)
    assert _mad(photo.pixels, np.asarray(image)) < 4  # lossy AVIF/HEIF: close; JPEG 2000 lossless: exact
    name = "JPEG2000" if fmt == "J2K" else fmt
    assert check_header(data) == (name, 64, 40)
    # the first bytes of a big object: JPEG 2000's header is there; libavif and libheif want the whole file
    # (then the pixel limit is checked from the header after the read, still before decoding)
    assert check_header(data[: len(data) // 2]) == (None if fmt in ("AVIF", "HEIF") else (name, 64, 40))


def test_a_real_photo_in_each_format_keeps_its_text_pixels(tmp_path):
    """The sample generator's photo (a street scene with words) comes out of each format near its source."""
    truth = generate(str(tmp_path), count=1, seed=SEED)[0]
    source = Image.open(tmp_path / truth["image"]).convert("RGB")
    small = source.resize((512, 384))
    for fmt, params in (("AVIF", {"quality": 80}), ("HEIF", {"quality": 80}), ("JPEG2000", {})):
        pixels = decode_image(encode(small, fmt, **params))
        assert pixels.shape == (384, 512, 3)
        assert _mad(pixels, np.asarray(small)) < 3, fmt


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 8])
def test_camera_orientation_is_honoured(fmt, orientation):
    """A phone stores the pixels as the sensor saw them and says how to turn them: AVIF and HEIF keep that as
    the container's rotation and mirror (irot/imir, written by the encoders from the EXIF tag). Pillow hands
    AVIF's back as the EXIF orientation, which decoding applies; libheif turns HEIF itself (and pillow-heif
    sets the EXIF tag to 1 so that nothing is turned twice)."""
    upright = gradient()
    stored = stored_for_orientation(upright, orientation)
    exif = PhotoExif(orientation=orientation, make="Phone").to_exif().tobytes()
    photo = decode_photo(encode(stored, fmt, exif=exif))
    assert photo.pixels.shape == (40, 64, 3)
    assert _mad(photo.pixels, np.asarray(upright)) < 4
    assert photo.metadata.camera_make == "Phone"
    if fmt == "AVIF":
        assert photo.metadata.orientation == orientation


def test_jpeg2000_has_no_orientation_its_pixels_are_used_as_stored():
    """JPEG 2000 carries no EXIF (Pillow neither writes nor reads one there): nothing to turn, nothing to test
    about turning; the pixels come out as stored and the orientation is unknown."""
    stored = stored_for_orientation(gradient(), 6)
    photo = decode_photo(encode(stored, "JPEG2000", exif=PhotoExif(orientation=6).to_exif().tobytes()))
    assert photo.pixels.shape == (64, 40, 3)
    assert _mad(photo.pixels, np.asarray(stored)) == 0
    assert photo.metadata.orientation is None


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_truncated_files_are_error_rows_never_crashes(fmt):
    """Cut anywhere: an error that names the damage once the format's signature is there, never pixels."""
    data = encode(gradient(), fmt)
    signature = 4 if fmt == "J2K" else 12
    for cut in range(1, len(data)):
        message = r"^not an image " if cut < signature else r"^(truncated or corrupt|unreadable) "
        with pytest.raises(ImageDecodeError, match=message):
            decode_image(data[:cut])


def _declare_size(data: bytes, fmt: str, width: int, height: int) -> bytes:
    """The same file with a larger size in its header (the pixel data stays small): a decompression bomb."""
    out = bytearray(data)
    if fmt in ("AVIF", "HEIF"):  # every `ispe` property (the image's spatial extents)
        at = out.find(b"ispe")
        assert at > 0
        while at > 0:
            out[at + 8 : at + 16] = struct.pack(">II", width, height)
            at = out.find(b"ispe", at + 4)
    else:
        if fmt == "JPEG2000":  # the JP2 header's `ihdr` box
            at = out.find(b"ihdr")
            out[at + 4 : at + 12] = struct.pack(">II", height, width)
        siz = out.find(b"\xff\x4f\xff\x51")  # and the codestream's SIZ marker
        out[siz + 8 : siz + 16] = struct.pack(">II", width, height)
    return bytes(out)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, from ~89 MP
@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_pixel_limit_refuses_a_bomb_by_its_header(fmt):
    data = encode(gradient((64, 64)), fmt)  # 64x64: no HEIF clean-aperture crop, the size is `ispe`'s alone
    with pytest.raises(ImageDecodeError, match=r"^refused: 64x64 = 4096 pixels is over the limit of 2000$"):
        decode_image(data, max_pixels=2000)
    bomb = _declare_size(data, fmt, 10_000, 9_000)  # 90 MP: over the default 80 MP, under Pillow's guard
    message = r"^refused: 10000x9000 = 90000000 pixels is over the limit of 80000000$"
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(bomb)
    if fmt not in ("AVIF", "HEIF"):  # their decoders need the whole file to read the header
        with pytest.raises(ImageDecodeError, match=message):
            check_header(bomb[:200])


def test_jpeg2000_codestream_larger_than_its_jp2_header_is_refused():
    """Pillow takes a JP2's size from its `ihdr` box; the codestream inside decides what OpenJPEG decodes."""
    data = bytearray(encode(gradient(), "JPEG2000"))
    siz = data.find(b"\xff\x4f\xff\x51")
    data[siz + 8 : siz + 16] = struct.pack(">II", 10_000, 9_000)
    with pytest.raises(ImageDecodeError, match=r"^refused: 10000x9000 = "):
        decode_image(bytes(data))


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF", "JPEG2000"])
def test_alpha_is_composited_on_white(fmt):
    image = gradient(alpha=True)
    pixels = decode_image(encode(image, fmt))
    assert pixels.shape == (40, 64, 3)
    assert pixels[:, :8].min() >= 245  # transparent: white
    assert _mad(pixels[:, 8:], np.asarray(image.convert("RGB"))[:, 8:]) < 4


def test_sixteen_bit_jpeg2000_becomes_eight_bit():
    grey = (np.arange(64, dtype=np.uint16)[None, :] * 1000).repeat(40, axis=0)
    data = encode(Image.fromarray(grey), "JPEG2000")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    pixels = decode_image(data)
    assert pixels.shape == (40, 64, 3)
    assert np.abs(pixels[..., 0].astype(int) - (grey / 65535 * 255).astype(int)).max() <= 1


def test_heif_with_the_generic_brand_is_still_heif():
    """`mif1` is also a brand Pillow's AVIF plugin accepts: it must let the HEVC file through to HEIF."""
    data = bytearray(encode(gradient(), "HEIF"))
    assert data[8:12] == b"heic"
    data[8:12] = b"mif1"
    assert decode_image(bytes(data)).shape == (40, 64, 3)


def test_a_heif_with_several_images_reads_its_primary_one():
    heif = pillow_heif.from_pillow(gradient())
    heif.add_from_pillow(gradient((48, 32)))
    buf = io.BytesIO()
    heif.save(buf, format="HEIF", primary_index=1)
    assert decode_image(buf.getvalue()).shape == (32, 48, 3)


def test_an_iso_media_file_that_is_no_image_is_not_an_image():
    data = b"\0\0\0\x18ftypqt  \0\0\0\0qt  " + b"\0" * 40  # a QuickTime movie is no image
    with pytest.raises(ImageDecodeError, match=r"^not an image \(unrecognised format\)$"):
        decode_image(data)


# Documents: PDF and multi-page TIFF, page by page ---------------------------------------------------------


def _pages(count: int) -> list[Image.Image]:
    return [gradient((96 + 16 * i, 64)) for i in range(count)]


def test_a_pdf_is_read_page_by_page_at_200_dpi():
    """Pillow writes each page at 200 dpi, so pdfium's 200 dpi rendering gives the page's own size back."""
    pages = _pages(3)
    document = open_pages(pdf_bytes(pages))
    assert (document.kind, document.total, document.count, document.over_limit) == ("PDF", 3, 3, None)
    for index, page in enumerate(pages):
        pixels = document.decode(index).pixels
        assert pixels.shape == (page.height, page.width, 3) and pixels.dtype == np.uint8
        assert _mad(pixels, np.asarray(page)) < 4  # Pillow stores the pages as JPEG
    with pytest.raises(IndexError):
        document.decode(3)


def test_a_multi_page_tiff_is_read_page_by_page_and_a_photo_is_one_page():
    pages = _pages(3)
    data = tiff_bytes(pages)
    document = open_pages(data)
    assert (document.kind, document.total, document.count) == ("TIFF", 3, 3)
    for index, page in enumerate(pages):
        assert _mad(document.decode(index).pixels, np.asarray(page)) == 0  # deflate: lossless
    assert decode_photo(data).pixels.shape == (64, 96, 3)  # decode_photo alone: the first page
    photo = open_pages(encode(gradient(), "PNG"))
    assert (photo.kind, photo.total, photo.count) == ("image", 1, 1)
    assert photo.decode(0).pixels.shape == (40, 64, 3)


def test_a_document_over_the_page_limit_reads_its_first_pages_and_says_so():
    document = open_pages(blank_pdf(5), max_pages=3)
    assert (document.total, document.count) == (5, 3)
    assert document.over_limit == (
        "refused: the document has 5 pages, over the page limit of 3: pages 4-5 not read"
    )
    assert open_pages(tiff_bytes(_pages(3)), max_pages=2).over_limit.endswith(": page 3 not read")
    assert open_pages(blank_pdf(5)).count == 5 == imageio.DEFAULT_MAX_PAGES // 10
    with pytest.raises(ValueError):
        open_pages(blank_pdf(1), max_pages=0)


def test_encrypted_and_broken_pdfs_are_named_errors():
    with pytest.raises(ImageDecodeError, match=r"^PDF is encrypted: it needs a password to be read$"):
        open_pages(encrypted_pdf())
    data = pdf_bytes(_pages(2))
    with pytest.raises(ImageDecodeError, match=r"^PDF is damaged: .*Data format error"):
        open_pages(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=r"^PDF is damaged: "):
        open_pages(b"%PDF-1.7\n" + b"\0" * 64)
    with pytest.raises(ImageDecodeError, match=r"^PDF is damaged: "):  # no pages: pdfium refuses it
        open_pages(blank_pdf(0))


def test_pdf_pages_keep_the_pixel_limit_and_the_long_side_cap():
    with pytest.raises(
        ImageDecodeError, match=r"^refused: 200x100 = 20000 pixels is over the limit of 1000$"
    ):
        open_pages(blank_pdf(1), max_pixels=1000).decode(0)
    poster = open_pages(blank_pdf(1, size_pt=(1440, 720))).decode(0).pixels  # 20 x 10 inches
    assert poster.shape == (imageio.PDF_MAX_SIDE // 2, imageio.PDF_MAX_SIDE, 3)
    assert poster.min() == 255  # a blank page is white, not transparent black
