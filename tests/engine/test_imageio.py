"""`engine/imageio.py`: bytes that are not a photo (bad bytes, EPS, corrupt JPEG scans) give one clear
error."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from include.sample_data import generate
from tests.helpers import DOS_EPS, EPS, corrupt_scans
from wildocr.engine.imageio import ImageDecodeError, check_header, decode_image

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
