"""A photo's own metadata (EXIF): when, where and by what it was taken, and how it must be turned.

Pillow parses the bytes (`Image.getexif()` / `Exif.get_ifd`); this module only checks and converts the
values it returns. EXIF is written by cameras, phone apps and anyone with a hex editor, so every value is
treated as hostile: a wrong type, a zero denominator, an impossible date or position, an over-long string
gives None for that field and a warning, never an exception. A photo whose pixels decode is never lost
because of its metadata.

Fields (the `images` columns of the same names):
- `taken_at`: DateTimeOriginal (else DateTimeDigitized, else DateTime) with its SubSecTime. When the
  matching OffsetTime* tag gives the UTC offset, `taken_at` is in UTC and `taken_at_is_local` False;
  without one it is the camera's wall-clock time (written as if it were UTC) and `taken_at_is_local` True.
  `taken_at_offset_minutes` is the offset (None when unknown).
- `gps_latitude`, `gps_longitude` (signed decimal degrees, WGS 84; south and west negative),
  `gps_altitude` (metres, negative below sea level). Dropped: a void fix (GPSStatus V), a missing
  hemisphere reference, minutes >= 60 or seconds > 60, |lat| > 90, |lon| > 180, altitude outside
  -12 km..100 km, and exactly 0/0 (what many phones write without a fix).
- `camera_make`, `camera_model`: printable text of at most 64 characters, trimmed.
- `orientation`: the EXIF Orientation (1..8) that decoding applied (None: no usable tag, pixels as stored).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

# Tags (EXIF 2.32 / TIFF 6.0).
MAKE, MODEL, ORIENTATION, DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATETIME_ORIGINAL, DATETIME_DIGITIZED = 0x9003, 0x9004
OFFSET_TIME, OFFSET_TIME_ORIGINAL, OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
SUBSEC_TIME, SUBSEC_TIME_ORIGINAL, SUBSEC_TIME_DIGITIZED = 0x9290, 0x9291, 0x9292
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON, GPS_ALT_REF, GPS_ALT, GPS_STATUS = 1, 2, 3, 4, 5, 6, 9

MAX_TEXT_CHARS = 64  # real makes and models are far shorter; longer is junk or an attack
MAX_WARNING_CHARS = 500
MIN_ALTITUDE_M, MAX_ALTITUDE_M = -12_000.0, 100_000.0
MIN_YEAR, MAX_YEAR = 1900, 2100
ORIENTATIONS = frozenset(range(1, 9))

# (datetime tag, its IFD, sub-second tag, offset tag), in order of preference.
_TIME_SOURCES = (
    (DATETIME_ORIGINAL, EXIF_IFD, SUBSEC_TIME_ORIGINAL, OFFSET_TIME_ORIGINAL),
    (DATETIME_DIGITIZED, EXIF_IFD, SUBSEC_TIME_DIGITIZED, OFFSET_TIME_DIGITIZED),
    (DATETIME, None, SUBSEC_TIME, OFFSET_TIME),
)
_DATETIME_RE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_RE = re.compile(r"([+-])(\d{2}):(\d{2})")


@dataclass(slots=True)
class PhotoMetadata:
    """What the photo says about itself; every field None when absent or not believable."""

    taken_at: _dt.datetime | None = None  # tz-aware UTC; see taken_at_is_local
    taken_at_is_local: bool | None = None
    taken_at_offset_minutes: int | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None
    gps_altitude: float | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    orientation: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def warning_text(self) -> str | None:
        """The warnings as one cell ("; "-joined, capped), None when there are none."""
        if not self.warnings:
            return None
        text = "; ".join(self.warnings)
        return text if len(text) <= MAX_WARNING_CHARS else text[: MAX_WARNING_CHARS - 3] + "..."


def load_exif(image: Image.Image) -> tuple[Image.Exif | None, str | None]:
    """Pillow's EXIF of an opened image (with its XMP orientation), or None and why it is unreadable."""
    try:
        return image.getexif(), None
    except Exception as exc:  # Pillow raises many types on broken IFDs
        return None, f"unreadable EXIF: {type(exc).__name__}: {_short(exc)}"


def read_orientation(exif: Mapping[int, Any] | None) -> tuple[int | None, str | None]:
    """The Orientation tag if it is a valid 1..8 (the only values decoding applies), else None + why."""
    if exif is None:
        return None, None
    try:
        value = exif.get(ORIENTATION)
    except Exception as exc:
        return None, f"orientation unreadable: {_short(exc)}"
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, int) or value not in ORIENTATIONS:
        return None, f"orientation {_show(value)} is not 1..8: not applied"
    return int(value), None


def read_metadata(exif: Image.Exif | None, *, orientation: int | None = None) -> PhotoMetadata:
    """Every metadata field of one photo; never raises (a bad field is None plus a warning)."""
    meta = PhotoMetadata(orientation=orientation)
    if exif is None:
        return meta
    try:
        ifd0 = dict(exif.items())
    except Exception as exc:
        meta.warnings.append(f"unreadable EXIF: {_short(exc)}")
        return meta
    exif_ifd = _sub_ifd(exif, EXIF_IFD, "Exif", ifd0, meta)
    gps_ifd = _sub_ifd(exif, GPS_IFD, "GPS", ifd0, meta)
    for step in (_read_time, _read_gps, _read_camera):
        try:
            step(meta, ifd0, exif_ifd, gps_ifd)
        except Exception as exc:  # a checker's own bug must not cost the photo either
            meta.warnings.append(f"{step.__name__[6:]}: {type(exc).__name__}: {_short(exc)}")
    return meta


# ---------------------------------------------------------------- fields


def _sub_ifd(
    exif: Image.Exif, tag: int, name: str, ifd0: dict[int, Any], meta: PhotoMetadata
) -> dict[int, Any]:
    if tag not in ifd0:
        return {}
    try:
        return dict(exif.get_ifd(tag))
    except Exception as exc:
        meta.warnings.append(f"{name} IFD unreadable: {type(exc).__name__}: {_short(exc)}")
        return {}


def _read_time(meta: PhotoMetadata, ifd0: dict, exif_ifd: dict, gps_ifd: dict) -> None:
    for tag, where, subsec_tag, offset_tag in _TIME_SOURCES:
        ifd = ifd0 if where is None else exif_ifd
        raw = ifd.get(tag)
        if raw is None:
            continue
        text = _text(raw)
        if text is None or not text.strip(" :\x00"):  # absent, or the "    :  :     :  :  " of no clock
            if text is None:
                meta.warnings.append(f"capture time {_show(raw)} is not text")
            continue
        match = _DATETIME_RE.fullmatch(text.strip())
        local = None
        if match:
            year, month, day, hour, minute, second = (int(g) for g in match.groups())
            with contextlib.suppress(ValueError):  # 2023:02:30, 25:00:00
                local = _dt.datetime(year, month, day, hour, minute, second)
        if local is None or not MIN_YEAR <= local.year <= MAX_YEAR:
            meta.warnings.append(f"capture time {_show(raw)} is not a date between {MIN_YEAR} and {MAX_YEAR}")
            continue
        local = local.replace(microsecond=_subsec_micros(exif_ifd.get(subsec_tag), meta))
        offset = _offset_minutes(exif_ifd.get(offset_tag), meta)
        if offset is None:
            meta.taken_at, meta.taken_at_is_local = local.replace(tzinfo=_dt.UTC), True
        else:
            meta.taken_at = (local - _dt.timedelta(minutes=offset)).replace(tzinfo=_dt.UTC)
            meta.taken_at_is_local, meta.taken_at_offset_minutes = False, offset
        return


def _subsec_micros(raw: Any, meta: PhotoMetadata) -> int:
    if raw is None:
        return 0
    text = _text(raw)
    digits = (text or "").strip(" \x00")
    if not digits.isdigit() or not digits.isascii():
        meta.warnings.append(f"sub-second time {_show(raw)} is not digits: ignored")
        return 0
    return int(digits[:6].ljust(6, "0"))


def _offset_minutes(raw: Any, meta: PhotoMetadata) -> int | None:
    if raw is None:
        return None
    text = _text(raw)
    match = _OFFSET_RE.fullmatch((text or "").strip(" \x00"))
    if match is None:
        meta.warnings.append(f"UTC offset {_show(raw)} is not ±HH:MM: capture time kept as local time")
        return None
    sign, hours, minutes = match.groups()
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > 14 * 60:
        meta.warnings.append(f"UTC offset {_show(raw)} is out of range: capture time kept as local time")
        return None
    return -total if sign == "-" else total


def _read_gps(meta: PhotoMetadata, ifd0: dict, exif_ifd: dict, gps: dict) -> None:
    if not gps:
        return
    status = _text(gps.get(GPS_STATUS)) if GPS_STATUS in gps else None
    if status is not None and status.strip(" \x00").upper() == "V":
        meta.warnings.append("GPS fix is void (GPSStatus V): position dropped")
        return
    lat = _coordinate(gps, GPS_LAT, GPS_LAT_REF, "NS", 90.0, "latitude", meta)
    lon = _coordinate(gps, GPS_LON, GPS_LON_REF, "EW", 180.0, "longitude", meta)
    if lat is not None and lon is not None:
        if lat == 0.0 and lon == 0.0:
            meta.warnings.append("GPS position is exactly 0,0 (no fix): dropped")
        else:
            meta.gps_latitude, meta.gps_longitude = lat, lon
    elif (lat is None) != (lon is None):
        meta.warnings.append("GPS has only one of latitude and longitude: dropped")
    if GPS_ALT in gps:
        meta.gps_altitude = _altitude(gps.get(GPS_ALT), gps.get(GPS_ALT_REF), meta)


def _coordinate(
    gps: dict, tag: int, ref_tag: int, hemispheres: str, limit: float, name: str, meta: PhotoMetadata
) -> float | None:
    raw = gps.get(tag)
    if raw is None:
        return None
    parts = raw if isinstance(raw, tuple) else (raw,)
    values = [_number(p) for p in parts]
    checked = [v for v in values if v is not None and v >= 0]
    if not 1 <= len(values) <= 3 or len(checked) != len(values):
        meta.warnings.append(f"GPS {name} {_show(raw)} is not degrees/minutes/seconds: dropped")
        return None
    degrees, minutes, seconds = (*checked, 0.0, 0.0)[:3]
    if minutes >= 60 or seconds > 60:  # 60 s happens: writers that round 59.99995 up
        meta.warnings.append(f"GPS {name} {_show(raw)} has minutes or seconds over 60: dropped")
        return None
    value = degrees + minutes / 60.0 + seconds / 3600.0
    if value > limit:
        meta.warnings.append(f"GPS {name} {value:.6g} is over {limit:g} degrees: dropped")
        return None
    ref = _text(gps.get(ref_tag))
    ref = (ref or "").strip(" \x00").upper()
    if ref not in hemispheres or len(ref) != 1:
        meta.warnings.append(f"GPS {name} reference {_show(gps.get(ref_tag))} is not {'/'.join(hemispheres)}")
        return None
    return -value if ref == hemispheres[1] else value


def _altitude(raw: Any, ref_raw: Any, meta: PhotoMetadata) -> float | None:
    value = _number(raw[0] if isinstance(raw, tuple) and len(raw) == 1 else raw)
    if value is None or value < 0:
        meta.warnings.append(f"GPS altitude {_show(raw)} is not a number of metres: dropped")
        return None
    ref = ref_raw
    if isinstance(ref, bytes | bytearray):
        ref = ref[0] if len(ref) == 1 else None
    elif isinstance(ref, tuple) and len(ref) == 1:
        ref = ref[0]
    if ref_raw is None:
        ref = 0  # EXIF's default: above sea level
    if isinstance(ref, bool) or ref not in (0, 1):
        meta.warnings.append(f"GPS altitude reference {_show(ref_raw)} is not 0 or 1: altitude dropped")
        return None
    metres = -value if ref == 1 else value
    if not MIN_ALTITUDE_M <= metres <= MAX_ALTITUDE_M:
        meta.warnings.append(f"GPS altitude {metres:.6g} m is not believable: dropped")
        return None
    return metres


def _read_camera(meta: PhotoMetadata, ifd0: dict, exif_ifd: dict, gps_ifd: dict) -> None:
    meta.camera_make = _label(ifd0.get(MAKE), "make", meta)
    meta.camera_model = _label(ifd0.get(MODEL), "model", meta)


def _label(raw: Any, name: str, meta: PhotoMetadata) -> str | None:
    if raw is None:
        return None
    text = _text(raw)
    if text is None:
        meta.warnings.append(f"camera {name} {_show(raw)} is not text")
        return None
    text = " ".join(text.replace("\x00", " ").split())
    if not text:
        return None
    if len(text) > MAX_TEXT_CHARS:
        meta.warnings.append(f"camera {name} is {len(text)} characters long (over {MAX_TEXT_CHARS}): dropped")
        return None
    if not text.isprintable():
        meta.warnings.append(f"camera {name} {_show(raw)} has control characters: dropped")
        return None
    return text


# ---------------------------------------------------------------- values


def _text(raw: Any) -> str | None:
    """ASCII tags arrive as str (bytes when Pillow could not decode them); anything else is not text."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bytes | bytearray):
        try:
            return bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


def _number(raw: Any) -> float | None:
    """A finite real number from an int, float or IFDRational (0/0 and x/0 come back as nan)."""
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(exc: BaseException) -> str:
    return _show(str(exc), 200).strip("'\"")
