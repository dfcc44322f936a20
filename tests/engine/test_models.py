"""`engine/models.py`: a missing or corrupt model file fails at start, naming the file."""

from __future__ import annotations

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
