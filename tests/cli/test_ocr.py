"""`wildocr ocr` (`wildocr/cli/ocr.py`): JSON lines, error rows and overlays."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from include.sample_data import generate
from tests.helpers import encode
from wildocr.cli import main


def test_cli_writes_json_lines_error_rows_and_overlays(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    truth = generate(str(photos), count=2, seed=4)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "wildocr.cli",
            "ocr",
            str(photos),
            "--out",
            str(out),
            "--render",
            str(tmp_path / "r"),
        ],
        check=True,
    )
    lines = {json.loads(x)["image"]: json.loads(x) for x in out.read_text().splitlines()}
    assert set(lines) == {"broken.jpg", *(t["image"] for t in truth)}
    assert "error" in lines["broken.jpg"] and lines["broken.jpg"]["words"] == []
    for t in truth:
        read = {w["text"] for w in lines[t["image"]]["words"]}
        assert len(read & {w["text"] for w in t["words"]}) >= 0.8 * len(t["words"])
        assert {"poly", "text", "confidence"} <= set(lines[t["image"]]["words"][0])
    overlays = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert overlays == sorted(Path(lines[t["image"]]["overlay"]).name for t in truth)
    for name, t in zip(overlays, sorted(truth, key=lambda t: t["image"]), strict=True):
        assert re.fullmatch(re.escape(t["image"].rsplit(".", 1)[0]) + r"\.[0-9a-f]{10}\.overlay\.png", name)


def test_cli_reads_a_phone_photo_saved_as_heic_and_as_avif_named_jpg(tmp_path: Path) -> None:
    """A photo as an iPhone stores it (HEIC) and as AVIF in a file named .jpg: both read, words out."""
    truth = generate(str(tmp_path / "src"), count=1, seed=4)[0]
    photo = Image.open(tmp_path / "src" / truth["image"]).convert("RGB")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "phone.heic").write_bytes(encode(photo, "HEIF", quality=90))
    (photos / "phone-avif.jpg").write_bytes(encode(photo, "AVIF", quality=90))
    out = tmp_path / "out.jsonl"
    assert main(["ocr", str(photos), "--out", str(out)]) == 0
    lines = {json.loads(x)["image"]: json.loads(x) for x in out.read_text().splitlines()}
    assert set(lines) == {"phone.heic", "phone-avif.jpg"}
    expected = {w["text"] for w in truth["words"]}
    for name, line in lines.items():
        assert "error" not in line, (name, line.get("error"))
        read = {w["text"] for w in line["words"]}
        assert len(read & expected) >= 0.8 * len(expected), name


def test_json_lines_carry_the_hash_and_photo_metadata_the_tables_get(tmp_path: Path) -> None:
    """`wildocr ocr` and `wildocr run` read a photo through one path: the JSON line holds the same hash
    and EXIF values as the `images` row."""
    import hashlib

    import duckdb

    photos = tmp_path / "photos"
    generate(str(photos), count=1, seed=12, exif=True)
    (path,) = sorted(p for p in photos.iterdir() if p.suffix == ".jpg")
    out = tmp_path / "out.jsonl"
    assert main(["ocr", str(path), "--out", str(out)]) == 0
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    root = tmp_path / "tables"
    assert main(["run", str(photos), "--output", str(root), "--dt", "2026-03-01"]) == 0
    con = duckdb.connect()
    row = con.execute(f"SELECT * FROM read_parquet('{root}/images/dt=2026-03-01/*.parquet')").fetchone()
    columns = [d[0] for d in con.description]
    images = dict(zip(columns, row, strict=True))
    assert images["sha256"] == line["sha256"]
    assert line["photo"]["camera_make"] == images["camera_make"] and images["camera_make"]
    assert line["photo"]["taken_at"] == images["taken_at"].isoformat()
    assert "metadata_warnings" not in line["photo"]  # null: left out
    assert len(line["words"]) == images["n_words"]


def test_cli_reads_every_page_of_a_pdf_and_a_tiff_with_an_overlay_per_page(tmp_path: Path) -> None:
    """A 3-page PDF and a 2-page TIFF: one JSON line per page with its `page` and its own words, one
    overlay per page (page 1 named like a photo's, page N with `.pN`); an encrypted PDF is one error line."""
    from tests.helpers import encrypted_pdf, pdf_bytes, sample_pages, tiff_bytes

    pages, truth = sample_pages(3)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "letter.pdf").write_bytes(pdf_bytes(pages))
    (docs / "scan.tiff").write_bytes(tiff_bytes(pages[:2]))
    (docs / "locked.pdf").write_bytes(encrypted_pdf())
    out = tmp_path / "out.jsonl"
    assert main(["ocr", str(docs), "--out", str(out), "--render", str(tmp_path / "r")]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["image"], x["page"]) for x in lines] == [
        ("letter.pdf", 1),
        ("letter.pdf", 2),
        ("letter.pdf", 3),
        ("locked.pdf", 1),
        ("scan.tiff", 1),
        ("scan.tiff", 2),
    ]
    assert lines[3]["error"] == "PDF is encrypted: it needs a password to be read"
    for line in lines[:3] + lines[4:]:
        read = {w["text"] for w in line["words"]}
        expected = truth[line["page"] - 1]
        assert len(read & expected) >= 0.8 * len(expected), (line["image"], line["page"], read, expected)
        assert len({x["sha256"] for x in lines if x["image"] == line["image"]}) == 1
    overlays = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert overlays == sorted(Path(x["overlay"]).name for x in lines if "overlay" in x)
    assert len(overlays) == 5
    assert re.fullmatch(r"letter\.[0-9a-f]{10}\.overlay\.png", Path(lines[0]["overlay"]).name)
    assert re.fullmatch(r"letter\.[0-9a-f]{10}\.p3\.overlay\.png", Path(lines[2]["overlay"]).name)


# What `wildocr ocr` on local files never needs: the S3 side, Airflow, the graph editor, the plotting and
# query libraries (each is imported by the code that uses it), and pyarrow (~33 MB, ~0.1 s): the row
# layout it shares with the tables is plain Python in storage/tables.py, whose schemas are built on first use.
HEAVY_MODULES = ("s3fs", "airflow", "duckdb", "onnx", "matplotlib", "tqdm", "openvino", "pyarrow")


def _heavy_modules_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint([m for m in {HEAVY_MODULES!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1].replace("'", '"'))


def test_importing_the_cli_imports_no_heavy_module() -> None:
    """Start-up is imports and model loading: the command line parses without s3fs, Airflow, duckdb."""
    code = "import wildocr.cli, wildocr.cli.ocr\nwildocr.cli.build_parser()"
    assert _heavy_modules_after(code) == []


@pytest.mark.slow  # a fresh interpreter that loads the models
def test_ocr_on_a_local_photo_to_json_lines_imports_no_heavy_module(tmp_path: Path) -> None:
    generate(str(tmp_path / "photos"), count=1, seed=4)
    photo = next(p for p in (tmp_path / "photos").iterdir() if p.suffix == ".png" or p.suffix == ".jpg")
    out = tmp_path / "out.jsonl"
    code = f"from wildocr.cli import main\nmain(['ocr', {str(photo)!r}, '--out', {str(out)!r}])"
    assert _heavy_modules_after(code) == []
    assert json.loads(out.read_text())["words"]
