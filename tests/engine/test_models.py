"""`engine/models.py`: a missing or corrupt model file fails at start, naming the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wildocr.engine import ModelFileError, OCREngine


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


def test_int8_cache_key_covers_the_calibration_photos(tmp_path: Path, monkeypatch) -> None:
    """The int8 detector is quantised from the shipped photos, never from the sample generator, and a
    changed photo means a new cache file, not a stale one."""
    import shutil

    from wildocr.engine import models, quantize

    fp32 = models.model_path(models.DET_MODEL)
    key = quantize.cache_key(fp32)
    assert [p.name for p in quantize.calibration_files()][:2] == ["00-normal.png", "01-hard.png"]
    assert len(quantize.calibration_files()) == 12
    same, changed = tmp_path / "same", tmp_path / "changed"
    for folder in (same, changed):
        shutil.copytree(quantize.CALIBRATION_DIR, folder)
    (changed / "00-normal.png").write_bytes((changed / "01-hard.png").read_bytes())
    monkeypatch.setattr(quantize, "CALIBRATION_DIR", same)
    assert quantize.cache_key(fp32) == key
    monkeypatch.setattr(quantize, "CALIBRATION_DIR", changed)
    assert quantize.cache_key(fp32) != key
    code = "import sys, wildocr.engine; print('wildocr.samples' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_edited_recognizer_is_cached_and_later_starts_need_no_onnx(tmp_path: Path, monkeypatch) -> None:
    """The arg-max graph edit (onnx import, parse, serialise) runs once per cache; a later engine reads
    the cached file and its charset, the same bytes and labels, without importing onnx."""
    from wildocr.engine import models

    monkeypatch.setenv("WILDOCR_CACHE_DIR", str(tmp_path / "cache"))
    rec = models.model_path(models.REC_MODEL)
    first, charset = models.recognizer_model(rec)
    again, charset_again = models.recognizer_model(rec)
    assert isinstance(first, Path) and again == first and charset_again == charset
    edited = models.with_device_argmax(rec)
    assert first.read_bytes() == edited and charset == models.recognizer_charset(edited)
    code = (
        "import sys\nfrom wildocr.engine import OCREngine\n"
        "OCREngine(lazy=True).load('recognize')\nprint('onnx' in sys.modules)"
    )
    env = {**__import__("os").environ, "WILDOCR_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


def test_edited_recognizer_without_a_writable_cache_comes_from_memory(tmp_path: Path, monkeypatch) -> None:
    from wildocr.engine import models

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("WILDOCR_CACHE_DIR", str(blocker / "cache"))
    model, charset = models.recognizer_model(models.model_path(models.REC_MODEL))
    assert isinstance(model, bytes) and charset[0] == "<blank>" and charset[-1] == " "
