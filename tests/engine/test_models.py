"""`engine/models.py`: a missing or corrupt model file, or a broken model folder, fails at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wildocr.engine import EngineConfig, ModelFileError, OCREngine


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


def test_int8_detector_quantises_each_convolution_with_its_bias_and_keeps_gelu_one_op(tmp_path: Path) -> None:
    """The shipped detector adds each convolution's bias in a separate Add and spells Gelu out in five
    ops; quantised as it is, every convolution leaves int8 for that Add. The pre-optimisation must hand the
    quantiser convolutions with their bias and one Gelu op, and change no fp32 output beyond rounding."""
    from collections import Counter

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import version_converter

    from wildocr.engine import models, quantize

    fp32 = models.model_path(models.DET_MODEL)
    int8 = onnx.load(str(quantize.int8_detector(fp32)))
    ops = Counter(node.op_type for node in int8.graph.node)
    convs = [node for node in int8.graph.node if node.op_type == "Conv"]
    # 75 of the 83 convolutions have a bias (the other 8 feed a squeeze-excite block without one)
    assert len(convs) == 83 and sum(len(node.input) == 3 for node in convs) == 75
    assert ops["Erf"] == 0 and ops["Gelu"] == 13

    upgraded = tmp_path / "fp32.onnx"
    onnx.save(
        version_converter.convert_version(onnx.load(str(fp32)), quantize.QUANT_SETTINGS.opset), str(upgraded)
    )
    optimized = quantize._pre_optimize(upgraded, tmp_path / "optimized.onnx", quantize.QUANT_SETTINGS)
    x = np.random.default_rng(0).random((1, 3, 224, 320), dtype=np.float32)
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    before, after = (
        ort.InferenceSession(str(path), plain, providers=["CPUExecutionProvider"])
        for path in (upgraded, optimized)
    )
    name = before.get_inputs()[0].name
    np.testing.assert_allclose(after.run(None, {name: x})[0], before.run(None, {name: x})[0], atol=1e-5)


# Model folders: a broken one is refused at start-up, naming the problem ---------------------------------


def _rewrite(manifest: Path, **changes) -> None:
    import json

    data = json.loads(manifest.read_text())
    data.update(changes)
    manifest.write_text(json.dumps(data))


def _break(folder: Path, how: str) -> None:
    """Break a valid model folder (det and rec) one way."""
    import json
    import shutil

    import onnx

    from wildocr.engine import models

    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text())
    if how == "no manifest":
        manifest.unlink()
    elif how == "bad JSON":
        manifest.write_text('{"format": "wildocr-model-folder/1",')
    elif how == "unknown format":
        _rewrite(manifest, format="wildocr-model-folder/9")
    elif how == "unknown role":
        _rewrite(manifest, models={**data["models"], "cls": data["models"]["det"]})
    elif how == "missing file":
        (folder / "rec.onnx").unlink()
    elif how == "outside the folder":
        _rewrite(manifest, models={**data["models"], "det": {**data["models"]["det"], "file": "../det.onnx"}})
        shutil.copyfile(folder / "det.onnx", folder.parent / "det.onnx")
    elif how == "sha256 mismatch":
        with open(folder / "det.onnx", "ab") as fh:
            fh.write(b"\0")
    elif how in ("other graph", "other charset"):
        if how == "other graph":  # the orientation classifier where the detector belongs
            shutil.copyfile(models.model_path(models.CLS_MODEL), folder / "det.onnx")
        else:
            proto = onnx.load(str(folder / "rec.onnx"))
            (meta,) = [p for p in proto.metadata_props if p.key == "character"]
            meta.value = "\n".join(meta.value.splitlines()[:100])
            onnx.save(proto, str(folder / "rec.onnx"))
        role = "det" if how == "other graph" else "rec"
        entry = {**data["models"][role], "sha256": models.file_sha256(folder / f"{role}.onnx")}
        _rewrite(manifest, models={**data["models"], role: entry})
    elif how == "not ONNX":
        (folder / "det.onnx").write_bytes(b"not a model" * 200)
        entry = {**data["models"]["det"], "sha256": models.file_sha256(folder / "det.onnx")}
        _rewrite(manifest, models={**data["models"], "det": entry})


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no manifest", "no manifest.json in it"),
        ("bad JSON", "manifest.json is not JSON"),
        ("unknown format", "manifest.json format is 'wildocr-model-folder/9', expected '"),
        ("unknown role", r"unknown model role\(s\) \['cls'\]"),
        ("missing file", "models.rec.file 'rec.onnx' is missing"),
        ("outside the folder", "models.det.file '../det.onnx' is outside the folder"),
        ("sha256 mismatch", "det.onnx has SHA-256 .* the manifest says"),
        ("other graph", "det.onnx has other inputs or outputs than the stock PP-OCRv6_det_small.onnx"),
        ("other charset", "rec.onnx has another charset than the stock"),
        ("not ONNX", "det.onnx is not an ONNX model"),
    ],
)
def test_a_broken_model_folder_is_refused_at_start_up(tmp_path: Path, how: str, message: str) -> None:
    """Even a lazy engine (the staged tasks) checks the folder before it reads anything."""
    from tests.helpers import model_folder

    folder = model_folder(tmp_path / "ft", det=True, rec=True)
    _break(folder, how)
    with pytest.raises(ModelFileError, match=f"model folder {tmp_path}/ft: {message}"):
        OCREngine(EngineConfig(model_dir=str(folder)), lazy=True)


@pytest.mark.parametrize("limit_side", [16, 5000, 640.5, "640", True])
def test_a_model_folder_names_a_detector_input_size_in_whole_pixels(tmp_path: Path, limit_side) -> None:
    from tests.helpers import model_folder
    from wildocr.engine import models

    assert models.load_model_folder(model_folder(tmp_path / "ok", det_limit_side=640)).det_limit_side == 640
    assert models.load_model_folder(model_folder(tmp_path / "stock-size")).det_limit_side is None
    folder = model_folder(tmp_path / "ft", det_limit_side=limit_side)
    with pytest.raises(ModelFileError, match=r"models\.det\.limit_side must be a whole number of pixels"):
        models.load_model_folder(folder)


@pytest.mark.parametrize(
    ("given", "message"),
    [("s3://bucket/models/ft", "only a local folder is supported"), ("{tmp}/none", "not found")],
)
def test_a_model_folder_must_be_a_local_folder(tmp_path: Path, given: str, message: str) -> None:
    from wildocr.engine import models

    with pytest.raises(ModelFileError, match=message):
        models.load_model_folder(given.format(tmp=tmp_path))


def test_a_model_folder_names_its_files_and_leaves_absent_roles_stock(tmp_path: Path) -> None:
    from tests.helpers import model_folder
    from wildocr.engine import models

    folder = models.load_model_folder(f"file://{model_folder(tmp_path / 'ft', det=False, rec=True)}")
    assert (folder.name, folder.det, folder.rec) == ("ft", None, tmp_path / "ft" / "rec.onnx")
    assert folder.label(tmp_path / "ft" / "rec.onnx") == "ft/rec.onnx"
    assert folder.manifest["format"] == models.MODEL_FOLDER_FORMAT
    info = OCREngine(EngineConfig(model_dir=str(folder.path)), lazy=True).model_info
    assert info["rec_model"] == "ft/rec.onnx"
    assert info["rec_sha256"] == models.file_sha256(models.model_path(models.REC_MODEL))  # a byte copy


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


@pytest.mark.slow
def test_int8_build_stays_under_3_gb_and_writes_the_same_bytes(tmp_path: Path) -> None:
    """A worker's first detector load builds the int8 file: ONNX Runtime's calibrator with memory
    patterns peaked at 3.9 GiB (a 4 GB Docker host would kill the worker). Without them it needs 1.8 GiB and
    writes the same bytes, so every machine still reads the same words."""
    import hashlib
    import os

    from wildocr.engine import models, quantize

    fp32 = models.model_path(models.DET_MODEL)
    cached = quantize.int8_detector(fp32)
    code = (
        "import resource; from wildocr.engine import models, quantize; "
        "print(quantize.int8_detector(models.model_path(models.DET_MODEL))); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    env = {**os.environ, "WILDOCR_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    built, peak_kb = out.stdout.split()
    assert Path(built).parent == tmp_path and Path(built).name == cached.name
    digest = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in (built, cached)]
    assert digest[0] == digest[1]
    assert int(peak_kb) < 3 * 1024 * 1024
