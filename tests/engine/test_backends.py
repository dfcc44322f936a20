"""Inference backends (engine/backends.py): ONNX Runtime and OpenVINO behind one interface.

Each backend reads real generated photos through the `wildocr ocr` command in its own process: both must
read the known words, and `auto` must pick the backend the docs promise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from shapely.geometry import Polygon

from include.sample_data import generate
from wildocr.engine import backends


def test_auto_picks_openvino_on_cpu_when_installed_and_onnxruntime_on_gpu() -> None:
    expected = "openvino" if backends.openvino_available() else "onnxruntime"
    assert backends.resolve_backend("auto", on_gpu=False) == expected
    assert backends.resolve_backend("auto", on_gpu=True) == "onnxruntime"
    assert backends.resolve_backend("onnxruntime", on_gpu=False) == "onnxruntime"
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.resolve_backend("tensorrt", on_gpu=False)
    with pytest.raises(ValueError, match="CPU only"):
        backends.resolve_backend("openvino", on_gpu=True)


def _read_rate(out: Path, truth: list[dict]) -> float:
    """Share of ground-truth words read with the exact text by a box overlapping it (IoU > 0.5)."""
    records = {json.loads(line)["image"]: json.loads(line) for line in out.read_text().splitlines()}
    total = hits = 0
    for line in truth:
        for gt in line["words"]:
            total += 1
            g = Polygon(gt["poly"]).buffer(0)
            for w in records[line["image"]]["words"]:
                p = Polygon(w["poly"]).buffer(0)
                union = p.union(g).area
                if w["text"] == gt["text"] and union and p.intersection(g).area / union > 0.5:
                    hits += 1
                    break
    return hits / total


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_each_backend_reads_generated_photos(backend: str, tmp_path: Path) -> None:
    if backend == "openvino" and not backends.openvino_available():
        pytest.skip("openvino is not installed (the openvino extra)")
    truth = generate(str(tmp_path / "photos"), count=4, seed=11)
    out = tmp_path / "words.jsonl"
    images = [str(tmp_path / "photos" / line["image"]) for line in truth]
    cmd = [sys.executable, "-m", "wildocr.cli", "-v", "ocr", *images, "--out", str(out), "--backend", backend]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"via {backend}" in proc.stderr  # the engine's start-up line names the backend that ran
    assert _read_rate(out, truth) >= 0.9


def test_openvino_session_answers_like_an_onnxruntime_session() -> None:
    if not backends.openvino_available():
        pytest.skip("openvino is not installed")
    import numpy as np

    from wildocr.engine import models

    path = models.model_path(models.CLS_MODEL)
    batch = np.random.default_rng(0).uniform(-1, 1, (3, 3, 48, 192)).astype(np.float32)
    ov = backends.OpenVINOSession(path, threads=1, streams=1)
    name = ov.get_inputs()[0].name
    (probs,) = ov.run(None, {name: batch})
    assert ov.get_providers() == [backends.OPENVINO_PROVIDER]
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    ort = backends.create_session(path, backends.SessionOptions(device="cpu", intra_op_threads=1))
    assert np.allclose(probs, ort.run(None, {ort.get_inputs()[0].name: batch})[0], atol=1e-4)
    again = ov.run(None, {name: batch[:1]})[0]
    assert np.allclose(again[0], probs[0], atol=1e-5)  # outputs are copies, not the request's buffers
