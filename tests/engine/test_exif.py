"""Photos as data: EXIF metadata, content hashes and duplicates, the script of each word.

EXIF is written by Pillow (wildocr.samples.PhotoExif) for believable photos, and byte by byte (a tiny TIFF
writer below) for hostile ones, since Pillow's writer refuses most of what an attacker would write. The
end-to-end tests run the real models through `wildocr run` and read the tables back with DuckDB.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from tests.helpers import HOSTILE, ascii_, photo_bytes, rational, raw_exif, short
from wildocr.engine import exif as exif_mod
from wildocr.engine.imageio import decode_image, decode_photo
from wildocr.samples import PhotoExif

UTC = dt.UTC


# ---------------------------------------------------------------- EXIF: believable photos


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize(
    "meta",
    [
        PhotoExif(
            taken_at=dt.datetime(2026, 11, 24, 14, 3, 5),
            utc_offset="+01:00",
            subsec="25",
            gps=(48.858222, 2.2945, 35.2),
            make="Canon",
            model="Canon EOS R5",
            orientation=1,
        ),
        PhotoExif(taken_at=dt.datetime(2026, 1, 1, 0, 30, 0), utc_offset="-05:30", orientation=6),
        PhotoExif(
            taken_at=dt.datetime(2025, 12, 31, 23, 59, 59), gps=(-33.8568, -151.2153, -2.5), orientation=8
        ),
        PhotoExif(make="  GoPro\0", model="HERO12", orientation=3),
        PhotoExif(gps=(40.6892, -74.0445, None), orientation=5),
        PhotoExif(make="X", gps=(-22.95, -43.21, 10.0)),  # 22°56'60": minutes must not round up to 60
    ],
    ids=[
        "offset-gps-camera",
        "negative-offset-turned",
        "local-time-south-west",
        "camera-only",
        "gps-no-alt",
        "gps-near-whole-minutes",
    ],
)
def test_metadata_of_generated_photos(meta, fmt):
    data, upright = photo_bytes(meta, fmt)
    photo = decode_photo(data)
    got = {name: getattr(photo.metadata, name) for name in meta.expected()}
    want = meta.expected()
    if want["taken_at"] is not None:
        want["taken_at"] = dt.datetime.fromisoformat(want["taken_at"])
    if want["camera_make"]:
        want["camera_make"] = want["camera_make"].strip(" \0")
    for key in ("gps_latitude", "gps_longitude", "gps_altitude"):
        if want[key] is not None:
            assert got.pop(key) == pytest.approx(want.pop(key), abs=1e-6)
    assert got == want
    assert photo.metadata.warnings == []
    assert photo.pixels.shape[:2] == upright.shape[:2]  # the orientation was applied
    if fmt == "PNG":  # lossless: exactly the upright pixels
        assert np.array_equal(photo.pixels[..., ::-1], upright)


def test_local_time_is_flagged_and_utc_time_is_shifted():
    # JPEG: Pillow's PNG writer drops an EXIF block whose IFD0 holds nothing but the Exif IFD pointer
    local = decode_photo(photo_bytes(PhotoExif(taken_at=dt.datetime(2026, 3, 1, 9, 0)), "JPEG")[0]).metadata
    assert local.taken_at == dt.datetime(2026, 3, 1, 9, 0, tzinfo=UTC) and local.taken_at_is_local is True
    assert local.taken_at_offset_minutes is None
    tokyo = PhotoExif(taken_at=dt.datetime(2026, 3, 1, 9, 0), utc_offset="+09:00")
    meta = decode_photo(photo_bytes(tokyo, "JPEG")[0]).metadata
    assert meta.taken_at == dt.datetime(2026, 3, 1, 0, 0, tzinfo=UTC) and meta.taken_at_is_local is False
    assert meta.taken_at_offset_minutes == 540


def test_photo_without_exif_has_no_metadata_and_no_warning():
    meta = decode_photo(photo_bytes(None)[0]).metadata
    assert meta == exif_mod.PhotoMetadata()


def test_recorded_orientation_is_the_one_applied():
    """Every orientation: the pixels come out upright and the metadata names the turn that did it."""
    for orientation in range(1, 9):
        data, upright = photo_bytes(PhotoExif(orientation=orientation))
        photo = decode_photo(data)
        assert photo.metadata.orientation == orientation
        assert np.array_equal(photo.pixels[..., ::-1], upright)
        assert np.array_equal(decode_image(data), photo.pixels)


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_hostile_exif_gives_nulls_and_warnings_never_an_error(name, fmt):
    ifd0, exif_ifd, gps, expected = HOSTILE[name]
    data, upright = photo_bytes(raw_exif(ifd0, exif_ifd, gps), fmt)
    photo = decode_photo(data)  # must not raise
    assert photo.pixels.shape[:2] == upright.shape[:2]
    for key, value in expected.items():
        assert getattr(photo.metadata, key) == value, key
    assert photo.metadata.warnings, "a dropped field must say why"
    text = photo.metadata.warning_text
    assert text is not None and len(text) <= exif_mod.MAX_WARNING_CHARS


def test_sixty_seconds_of_arc_are_accepted():
    """Writers that round 59.99995" up write 60": the position is still right."""
    gps = {
        1: ascii_("S"),
        2: rational((22, 1), (56, 1), (60, 1)),
        3: ascii_("W"),
        4: rational((43, 1), (12, 1), (36, 1)),
    }
    meta = decode_photo(photo_bytes(raw_exif({}, None, gps), "JPEG")[0]).metadata
    assert (meta.gps_latitude, meta.gps_longitude) == (pytest.approx(-22.95), pytest.approx(-43.21))
    assert meta.warnings == []


@pytest.mark.parametrize(
    "blob",
    [
        b"Exif\0\0II*\0\xff\xff\xff\x7f",  # IFD0 offset far outside
        b"Exif\0\0MM\0*\0\0\0\x08\xff\xff",  # entry count with no entries
        b"Exif\0\0garbage that is not TIFF at all",
        raw_exif({0x0112: short(6)})[:-6],  # truncated mid-IFD
    ],
    ids=["offset-outside", "count-without-entries", "not-tiff", "truncated"],
)
def test_unreadable_exif_blocks_still_decode(blob):
    data, upright = photo_bytes(blob, "JPEG")
    photo = decode_photo(data)
    assert photo.pixels.shape[:2] == upright.shape[:2]
    assert photo.metadata.taken_at is None and photo.metadata.gps_latitude is None
