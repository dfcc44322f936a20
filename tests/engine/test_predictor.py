"""The real PP-OCR models on real pixels: generated photos with known words must keep being read.

Tolerance: a ground-truth word counts as read when a predicted word box overlaps it with IoU > 0.5 and
its text is exactly equal (case-sensitive). The generator's photos are read ~100% today; the thresholds
below leave room for one or two hard misses, not for a regression.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon

from include.sample_data import generate
from wildocr.engine import EngineConfig, ImageDecodeError, ModelFileError, OCREngine, decode_image


def _iou(a, b) -> float:
    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union else 0.0


def read_rate(engine: OCREngine, folder: Path, truth: list[dict]) -> tuple[float, list[str]]:
    images = [decode_image((folder / line["image"]).read_bytes()) for line in truth]
    results = engine.read(images)
    total, misses = 0, []
    for line, result in zip(truth, results, strict=True):
        for gt in line["words"]:
            total += 1
            hits = [w for w in result.words if _iou(w.poly, gt["poly"]) > 0.5]
            if not any(w.text == gt["text"] for w in hits):
                misses.append(f"{line['image']}: {gt['text']!r} -> {[w.text for w in hits]}")
    return 1 - len(misses) / total, misses


@pytest.fixture(scope="module")
def engine() -> OCREngine:
    return OCREngine(EngineConfig(device="cpu"))


def test_reads_generated_photos(engine: OCREngine, tmp_path: Path) -> None:
    truth = generate(str(tmp_path), count=4, seed=11)
    rate, misses = read_rate(engine, tmp_path, truth)
    assert rate >= 0.9, misses


def test_reads_small_blurred_tilted_text(engine: OCREngine, tmp_path: Path) -> None:
    """Accuracy regression guard (small, blurred, tilted, low-contrast words on cluttered backgrounds)."""
    truth = generate(str(tmp_path), count=4, seed=23, hard=True)
    rate, misses = read_rate(engine, tmp_path, truth)
    assert rate >= 0.85, misses


def _sign(lines: list[str]) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """A blue sign with white lines of text (DejaVu Sans Bold, which has arrows), and the x extent of
    every drawn arrow."""
    from PIL import Image, ImageDraw, ImageFont

    from wildocr.samples import font_paths

    font_file = next(p for p in font_paths() if p.endswith("DejaVuSans-Bold.ttf"))
    font = ImageFont.truetype(font_file, 44)
    img = Image.new("RGB", (960, 540), (40, 70, 150))
    draw = ImageDraw.Draw(img)
    arrows: dict[str, tuple[float, float]] = {}
    for row, text in enumerate(lines):
        x, y = 80, 80 + 110 * row
        draw.text((x, y), text, font=font, fill=(245, 245, 240))
        for i, ch in enumerate(text):
            if ch in "←→↑":
                left = x + draw.textlength(text[:i], font=font)
                arrows[text] = (left, left + draw.textlength(ch, font=font))
    rng = np.random.default_rng(5)
    pixels = np.asarray(img, dtype=np.float32)[:, :, ::-1] + rng.normal(0, 4, (540, 960, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8), arrows


def test_arrows_on_signs_stay_out_of_words(engine: OCREngine) -> None:
    """Sign arrows read as characters ("←Bus", "EXIT →") are dropped and kept out of the word boxes."""
    image, arrows = _sign(["←Bus Stop", "EXIT →", "↑ Toilet"])
    words = engine.read([image])[0].words
    texts = [w.text for w in words]
    assert {"Bus", "Stop", "EXIT", "Toilet"} <= set(texts), texts
    assert not any(ch in "←→↑" for t in texts for ch in t), texts
    bus = next(w for w in words if w.text == "Bus")
    assert bus.bbox[0] >= arrows["←Bus Stop"][1] - 4, (bus.bbox, arrows)  # starts where the arrow ends
    before = OCREngine(EngineConfig(device="cpu", split_at_symbols=False, trim_to_characters=False))
    old = [w.text for w in before.read([image])[0].words]
    assert any(ch in "←→↑" for t in old for ch in t), old  # what the switch changes: arrows were words


def test_upside_down_photo_is_read_by_the_orientation_classifier(engine: OCREngine, tmp_path: Path) -> None:
    truth = generate(str(tmp_path), count=1, seed=5)
    image = decode_image((tmp_path / truth[0]["image"]).read_bytes())
    upright = {w.text for w in engine.read([image])[0].words}
    flipped = {w.text for w in engine.read([np.ascontiguousarray(image[::-1, ::-1])])[0].words}
    expected = {w["text"] for w in truth[0]["words"]}
    assert len(upright & expected) >= 0.9 * len(expected)
    assert len(flipped & expected) >= 0.7 * len(expected)


def test_results_carry_geometry_and_scores(engine: OCREngine, tmp_path: Path) -> None:
    truth = generate(str(tmp_path), count=1, seed=3)
    image = decode_image((tmp_path / truth[0]["image"]).read_bytes())
    result = engine.read([image])[0]
    assert (result.width, result.height) == (image.shape[1], image.shape[0])
    assert result.words
    for word in result.words:
        xs = [p[0] for p in word.poly]
        ys = [p[1] for p in word.poly]
        assert word.bbox == (min(xs), min(ys), max(xs), max(ys))
        assert 0 < word.confidence <= 1 and 0 < word.det_score <= 1
        assert 0 <= word.bbox[0] <= word.bbox[2] <= image.shape[1]
    assert engine.model_info["rec_model"].endswith(".onnx") and len(engine.model_info["rec_sha256"]) == 64


def test_batched_and_one_by_one_recognition_agree(engine: OCREngine, tmp_path: Path) -> None:
    truth = generate(str(tmp_path), count=2, seed=8)
    images = [decode_image((tmp_path / t["image"]).read_bytes()) for t in truth]
    crops = [c for img in images for c in engine.crop(img, engine.detect(img))]
    batched = [r.text for r in engine.recognize(crops)]
    single = [engine.recognize([c])[0].text for c in crops]
    assert len(crops) > 5
    assert sum(a == b for a, b in zip(batched, single, strict=True)) >= 0.95 * len(crops)


def test_missing_model_file_fails_at_start_with_its_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WILDOCR_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelFileError, match=r"PP-OCRv6_det_small\.onnx"):
        OCREngine()


def test_corrupt_model_file_fails_at_start(tmp_path: Path, monkeypatch) -> None:
    from wildocr.engine import models

    for name in (models.DET_MODEL, models.REC_MODEL, models.CLS_MODEL):
        (tmp_path / name).write_bytes(b"\0" * 4096)
    monkeypatch.setenv("WILDOCR_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelFileError, match=r"cannot load model|could not build the int8 detector"):
        OCREngine()


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


def test_fixed_shape_batches_read_the_same(engine: OCREngine, tmp_path: Path) -> None:
    """The GPU mode (every batch padded to batch_size rows) must not change what is read."""
    from wildocr.engine.recognition import RecognizerConfig, TextRecognizer

    truth = generate(str(tmp_path), count=1, seed=9)
    image = decode_image((tmp_path / truth[0]["image"]).read_bytes())
    crops = engine.crop(image, engine.detect(image))
    session, charset = engine.recognizer.session, engine.recognizer.charset
    fixed = TextRecognizer(session, charset, RecognizerConfig(batch_size=8, fixed_batch=True))
    assert fixed.fixed_batch
    assert [r.text for r in fixed(crops)] == [r.text for r in engine.recognizer(crops)]
