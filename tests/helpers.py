"""Helpers shared by several test modules: import them from here, never from another test module.

Sections: EXIF blocks built by hand; output tables read back; sample output tables; the SQL in include/sql;
hostile bytes (PNG headers, EPS, corrupt JPEG scans); docker-compose parsing; words read against the ground
truth; a local source folder. Fixtures live in a conftest.py (tests/conftest.py for the whole suite, a
folder's own conftest.py for fixtures only that folder shares).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import struct
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from PIL import Image

from wildocr.samples import PhotoExif, stored_for_orientation
from wildocr.storage import objectstore, tables

ROOT = Path(__file__).resolve().parents[1]
SQL_DIR = ROOT / "include" / "sql"
UTC = dt.UTC


# Small photos and EXIF blocks built by hand (engine/test_exif.py, engine/test_imageio.py) -------------------


def gradient(size=(64, 40), alpha: bool = False) -> Image.Image:
    """A small RGB gradient with a blue corner (so turns and flips are visible); with `alpha`, its 8 left
    columns are transparent (white once decoded)."""
    w, h = size
    upright = np.zeros((h, w, 3), np.uint8)
    upright[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 3
    upright[..., 1] = np.arange(h, dtype=np.uint8)[:, None] * 5
    upright[:5, :5, 2] = 255
    image = Image.fromarray(upright, "RGB")
    if alpha:
        mask = np.full((h, w), 255, np.uint8)
        mask[:, :8] = 0
        image.putalpha(Image.fromarray(mask))
    return image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    """`image` saved as `fmt` by the encoders in the Pillow and pillow-heif wheels: "J2K" is a bare JPEG 2000
    codestream (no JP2 boxes); "HEIF" is HEIC (HEVC), written whether or not pillow-heif's Pillow plugin is
    registered (EXIF bytes with an orientation become the container's irot/imir, as on a phone)."""
    buf = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.from_pillow(image).save(buf, format="HEIF", **params)
        return buf.getvalue()
    if fmt == "J2K":
        fmt, params = "JPEG2000", {"no_jp2": True, **params}
    image.save(buf, fmt, **params)
    return buf.getvalue()


def photo_bytes(exif: PhotoExif | bytes | None, fmt: str = "PNG", size=(64, 40)) -> tuple[bytes, np.ndarray]:
    """A small photo with a gradient (so turns are visible) and its upright RGB pixels."""
    image = gradient(size)
    upright = np.asarray(image).copy()
    extra = {}
    if isinstance(exif, PhotoExif):
        image = stored_for_orientation(image, exif.orientation)
        extra["exif"] = exif.to_exif()
    elif exif is not None:
        extra["exif"] = exif
    buf = io.BytesIO()
    image.save(buf, fmt, **extra)
    return buf.getvalue(), upright


ASCII, SHORT, LONG, RATIONAL, BYTE = 2, 3, 4, 5, 1


def ascii_(text: str | bytes) -> tuple[int, int, bytes]:
    raw = (text.encode("latin-1") if isinstance(text, str) else text) + b"\0"
    return ASCII, len(raw), raw


def short(*values: int) -> tuple[int, int, bytes]:
    return SHORT, len(values), struct.pack(f"<{len(values)}H", *values)


def long_(*values: int) -> tuple[int, int, bytes]:
    return LONG, len(values), struct.pack(f"<{len(values)}I", *values)


def rational(*pairs: tuple[int, int]) -> tuple[int, int, bytes]:
    return RATIONAL, len(pairs), b"".join(struct.pack("<II", n, d) for n, d in pairs)


def _ifd(entries: dict[int, tuple[int, int, bytes]], start: int) -> bytes:
    data_at = start + 2 + 12 * len(entries) + 4
    head, data = struct.pack("<H", len(entries)), b""
    for tag in sorted(entries):
        typ, count, payload = entries[tag]
        if len(payload) <= 4:
            head += struct.pack("<HHI", tag, typ, count)[:8] + payload.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, typ, count, data_at + len(data))
            data += payload + b"\0" * (len(payload) % 2)
    return head + struct.pack("<I", 0) + data


def raw_exif(ifd0: dict, exif_ifd: dict | None = None, gps: dict | None = None) -> bytes:
    """APP1 payload (b"Exif\\0\\0" + little-endian TIFF) with any tag types and values, valid or not."""
    ifd0 = dict(ifd0)
    subs = [(0x8769, exif_ifd), (0x8825, gps)]
    for tag, sub in subs:
        if sub is not None:
            ifd0[tag] = long_(0)
    first = _ifd(ifd0, 8)
    at, blobs = 8 + len(first), []
    for tag, sub in subs:
        if sub is not None:
            ifd0[tag] = long_(at)
            blob = _ifd(sub, at)
            blobs.append(blob)
            at += len(blob)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + _ifd(ifd0, 8) + b"".join(blobs)


GOOD_TIME = {0x9003: ascii_("2026:11:24 10:00:00")}


HOSTILE = {
    "zero-denominators": (
        {0x0112: short(1)},
        GOOD_TIME,
        {
            1: ascii_("N"),
            2: rational((48, 0), (0, 0), (5, 0)),
            3: ascii_("E"),
            4: rational((2, 1), (1, 1), (1, 1)),
            5: (BYTE, 1, b"\0"),
            6: rational((35, 0)),
        },
        {"gps_latitude": None, "gps_longitude": None, "gps_altitude": None, "orientation": 1},
    ),
    "wrong-types": (
        {0x010F: short(7), 0x0110: long_(1234), 0x0112: ascii_("6")},
        {0x9003: long_(20261124), 0x9011: short(60)},
        {1: short(78), 2: ascii_("48 51 24"), 3: ascii_("E"), 4: ascii_("2.29")},
        {"camera_make": None, "camera_model": None, "orientation": None, "taken_at": None},
    ),
    "absurd-gps": (
        {0x010F: ascii_("Canon")},
        {0x9003: ascii_("0000:00:00 00:00:00"), 0x9011: ascii_("+25:00")},
        {
            1: ascii_("N"),
            2: rational((95, 1), (0, 1), (0, 1)),
            3: ascii_("Q"),
            4: rational((10, 1), (75, 1), (0, 1)),
            5: (BYTE, 1, b"\x07"),
            6: rational((9_000_000, 1)),
        },
        {"gps_latitude": None, "gps_longitude": None, "gps_altitude": None, "taken_at": None},
    ),
    "huge-strings": (
        {0x010F: ascii_("M" * 60_000), 0x0110: ascii_("bad\x07model"), 0x0112: short(9)},
        {0x9003: ascii_("2026:13:45 99:00:00"), 0x9291: ascii_("x" * 500)},
        None,
        {"camera_make": None, "camera_model": None, "orientation": None, "taken_at": None},
    ),
    "void-fix-and-null-island": (
        {},
        {0x9003: ascii_("2026:11:24 10:00:00"), 0x9011: ascii_("nonsense")},
        {9: ascii_("V"), 1: ascii_("N"), 2: rational((1, 1), (0, 1), (0, 1)), 3: ascii_("E")},
        {
            "gps_latitude": None,
            "taken_at": dt.datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
            "taken_at_is_local": True,
        },
    ),
}


# Output tables read back ------------------------------------------------------------------------------------


RUN_SPECIFIC = {"processed_at", "run_id", "det_seconds", "rec_seconds"}


def read_rows(root: str, table: str, storage_options=None, tmp_path=None) -> list[dict]:
    """All rows of a table through DuckDB with hive partitioning (S3 output is downloaded first:
    DuckDB's httpfs extension cannot be installed here)."""
    fs, path = objectstore.url_to_fs(root, storage_options)
    if not objectstore.is_local(fs):
        local = tmp_path / f"download-{table}-{len(os.listdir(tmp_path))}"
        fs.invalidate_cache()
        fs.get(f"{path}/{table}/", str(local), recursive=True)
        pattern = f"{local}/*/*.parquet"
    else:
        pattern = f"{path}/{table}/*/*.parquet"
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning=true)")
    names = rel.columns
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


def stable(rows: list[dict]) -> list[tuple]:
    """Rows without run-specific columns, as a sorted list (the content that must not change)."""
    return sorted(
        (tuple(sorted((k, v) for k, v in r.items() if k not in RUN_SPECIFIC)) for r in rows), key=repr
    )


def assert_nothing_left_over(out: Path) -> None:
    """Only the part files remain: no staging tree, no lease, no temporary file."""
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files and all(tables.parse_part_name(f.rsplit("/", 1)[-1]) is not None for f in files), files
    assert not (out / "_staging").exists()


# Sample output tables (storage/test_tables.py, pipeline/test_shard.py) --------------------------------------


MODELS = {"det_model": "det.onnx", "det_sha256": "a" * 64, "rec_model": "rec.onnx", "rec_sha256": "b" * 64}


def _sample_tables(shard_no: int = 0) -> tuple[pa.Table, pa.Table]:
    from wildocr.engine.types import Word

    now = dt.datetime(2026, 11, 24, 12, 30, 1, 123456, tzinfo=dt.UTC)
    word = Word(
        text="Cafe",
        confidence=0.97,
        det_score=0.88,
        line_id=0,
        poly=((10.0, 20.0), (60.0, 20.0), (60.0, 40.0), (10.0, 40.0)),
        bbox=(10.0, 20.0, 60.0, 40.0),
    )
    images = tables.to_table(
        tables.IMAGES,
        [
            tables.image_row(
                image_uri="s3://b/a.jpg",
                etag="e1",
                size=10,
                run_id="r",
                shard=shard_no,
                processed_at=now,
                model_info=MODELS,
                width=100,
                height=50,
                n_words=1,
            ),
            tables.image_row(
                image_uri="s3://b/b.jpg",
                etag="e2",
                size=3,
                run_id="r",
                shard=shard_no,
                processed_at=now,
                model_info=MODELS,
                error="not an image (unrecognised format)",
            ),
        ],
    )
    words = tables.to_table(tables.WORDS, tables.word_rows("s3://b/a.jpg", [word], shard_no))
    return images, words


# The SQL in include/sql (storage/test_tables.py, e2e/test_spark_tables.py) ----------------------------------


DAYS = ("2026-11-23", "2026-11-24")


def named_queries(path: Path) -> dict[str, str]:
    """`-- name: x` blocks of an example file."""
    queries: dict[str, str] = {}
    name = None
    for line in path.read_text().splitlines():
        match = re.match(r"--\s*name:\s*(\w+)", line)
        if match:
            name = match.group(1)
            queries[name] = ""
        elif name:
            queries[name] += line + "\n"
    return queries


def connect(root: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET VARIABLE wildocr_root = '{root}'")
    con.execute((SQL_DIR / "duckdb_views.sql").read_text())
    return con


# Hostile bytes ----------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width x height, with a tiny IDAT: a decompression bomb's
    header (the pixels are never there; a decoder that trusted the size would allocate them)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n"
    b"newpath 0 0 moveto 64 64 lineto stroke showpage\n%%EOF\n"
)


# DOS EPS binary header (magic C5D0D3C6, PostScript at offset 32): the other way Pillow recognises EPS
DOS_EPS = b"\xc5\xd0\xd3\xc6" + (32).to_bytes(4, "little") + len(EPS).to_bytes(4, "little") + bytes(20) + EPS


def _jpeg(width: int, height: int, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def corrupt_scans(photo: bytes) -> tuple[bytes, bytes]:
    """(2 KB of zeros over the middle of the scan, a stray end-of-image marker in the middle of it)."""
    mid = (photo.index(b"\xff\xda") + len(photo)) // 2
    return photo[:mid] + bytes(2048) + photo[mid + 2048 :], photo[:mid] + b"\xff\xd9" + photo[mid:]


# docker-compose.yaml (e2e/test_deployment.py, e2e/test_install.py) ------------------------------------------


COMPOSE = ROOT / "docker-compose.yaml"


# Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ...
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Resolve compose `${...}` interpolation the way `docker compose config` does (`$$` -> `$`)."""
    env = env or {}

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return arg if value is None else value
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return "" if value is None else arg
        if (not value) if op == ":?" else value is None:
            raise ValueError(f"required variable {name} is unset: {arg}")
        return value or ""

    placeholder = "\0DOLLAR\0"
    return INTERPOLATION.sub(one, text.replace("$$", placeholder)).replace(placeholder, "$")


def env_map(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment` as a dict, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


# Words read against the ground truth (e2e/test_dag_runs.py, tests_stack) ------------------------------------


WORD_RECALL = 0.8  # measured on these seeds: see the assertion messages for the actual value


def _recall(ground_truth: list[dict], words: list[dict]) -> float:
    """Share of ground-truth words read exactly, per image (multiset intersection)."""
    found = total = 0
    for line in ground_truth:
        want = Counter(w["text"] for w in line["words"])
        got = Counter(w["text"] for w in words if w["image_uri"].endswith("/" + line["image"]))
        found += sum((want & got).values())
        total += sum(want.values())
    return found / total


# A local source folder (storage/test_objectstore.py, storage/test_manifest.py) ------------------------------


SOURCE_NAMES = [
    "a.JPG",
    "b.jpeg",
    "c.png",
    "notes.txt",
    "sub/e.webp",
    "sub/f.TIFF",
    "sub/deeper/g.bmp",
    "h.gif",
]


IMAGE_NAMES = ["a.JPG", "b.jpeg", "c.png", "sub/deeper/g.bmp", "sub/e.webp", "sub/f.TIFF"]


def _fill_local(root) -> None:
    for name in SOURCE_NAMES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


# Model folders (engine/test_models.py, the CLI and the DAGs: `--model-dir`, the `model_dir` Param) ----------

DET_FINAL_BIAS = "p2o.pd_op.reshape.76.0"  # the stock detector's last bias, before its sigmoid


def model_folder(
    folder: Path,
    *,
    det: bool = True,
    rec: bool = False,
    det_bias_shift: float = 0.0,
    det_limit_side: int | None = None,
) -> Path:
    """A model folder (docs/models.md) made from the stock files: byte copies, or with `det_bias_shift`
    added to the detector's last bias (a fine-tune in miniature: same graph, other weights, other boxes);
    `det_limit_side` is the input size its manifest says the detector was trained at."""
    import hashlib
    import json
    import shutil

    import onnx
    from onnx import numpy_helper

    from wildocr.engine import models

    folder.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    for role, stock_name, wanted in (("det", models.DET_MODEL, det), ("rec", models.REC_MODEL, rec)):
        if not wanted:
            continue
        stock, target = models.model_path(stock_name), folder / f"{role}.onnx"
        if role == "det" and det_bias_shift:
            proto = onnx.load(str(stock))
            (bias,) = [i for i in proto.graph.initializer if i.name == DET_FINAL_BIAS]
            bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + det_bias_shift, bias.name))
            onnx.save(proto, str(target))
        else:
            shutil.copyfile(stock, target)
        entries[role] = {
            "file": target.name,
            "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
            "base": {"file": stock_name, "sha256": models.file_sha256(stock)},
        }
        if role == "det" and det_limit_side is not None:
            entries[role]["limit_side"] = det_limit_side
    manifest = {
        "format": "wildocr-model-folder/1",
        "name": folder.name,
        "created_at": "2026-12-06T14:00:00Z",
        "models": entries,
        "training": {"data": [], "settings": {}, "seconds": 0.0, "device": "cpu"},
        "metrics": {},
        "license": "base weights Apache-2.0",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder


# Documents: PDFs and multi-page TIFFs (engine/test_imageio.py, cli, e2e) ---------------------------------


def sample_pages(count: int, seed: int = 41) -> tuple[list[Image.Image], list[set[str]]]:
    """`count` clean rendered scene-text images and the words each holds (one page each)."""
    from wildocr.samples import render_sample

    samples = [render_sample(seed, i, clean=True) for i in range(count)]
    return [Image.fromarray(s.rgb) for s in samples], [{w["text"] for w in s.words} for s in samples]


def pdf_bytes(pages: list[Image.Image], dpi: int = 200) -> bytes:
    """A PDF with one image page each, written by Pillow at `dpi` (so wildocr renders it pixel for pixel
    at its 200 dpi)."""
    copies = [page.copy() for page in pages]  # Pillow keeps save settings on the image object
    buf = io.BytesIO()
    copies[0].save(buf, "PDF", save_all=True, append_images=copies[1:], resolution=dpi)
    return buf.getvalue()


def tiff_bytes(pages: list[Image.Image]) -> bytes:
    """A multi-page TIFF (deflate), one page per image."""
    copies = [page.copy() for page in pages]
    buf = io.BytesIO()
    copies[0].save(buf, "TIFF", save_all=True, append_images=copies[1:], compression="tiff_deflate")
    return buf.getvalue()


def handmade_pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF built object by object with a correct cross-reference table (object 1 is the catalog)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R" % (len(objects) + 1) + trailer + b">>\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def blank_pdf(pages: int, size_pt: tuple[int, int] = (72, 36)) -> bytes:
    """A PDF of `pages` blank pages (1 x 0.5 inch by default: 200x100 pixels at 200 dpi)."""
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(pages))
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[%s]/Count %d>>" % (kids, pages)]
    objects += [b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 %d %d]>>" % size_pt] * pages
    return handmade_pdf(objects)


def encrypted_pdf() -> bytes:
    """A one-page PDF locked with a user password (standard security handler, RC4 40-bit): no reader
    opens it without the password."""
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>",
        b"<</Filter/Standard/V 1/R 2/O<" + b"ab" * 32 + b">/U<" + b"cd" * 32 + b">/P -4>>",
    ]
    file_id = b"<0123456789abcdef0123456789abcdef>"
    return handmade_pdf(objects, b"/Encrypt 4 0 R/ID[" + file_id + file_id + b"]")


def axis_box(x: float, y: float, w: float, h: float) -> np.ndarray:
    """An upright rectangle as a word quad (clockwise from top-left), for scoring and labelling tests."""
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)
