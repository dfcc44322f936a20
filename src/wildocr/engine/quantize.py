"""An int8 copy of the detector, made once at load time and cached on disk.

Static (QDQ, per-channel) quantisation needs calibration images. They must be the same everywhere, so that
every worker builds the same model and reruns read the same words: twelve generated scene-text photos ship
with the package (`calibration/*.png`, lossless; `bench/make_calibration.py` wrote them and says how). The
cache key hashes those files, the fp32 model, the quantiser settings and the versions of the libraries
that write the model, so a change to any of them builds a new file instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from wildocr.engine.detection import DetectorConfig, preprocess, resize_for_detection
from wildocr.engine.models import ModelFileError, cache_dir, file_sha256

log = logging.getLogger(__name__)

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
# Bump when the code that turns the files into network inputs (detection.preprocess and
# resize_for_detection) or `_quantize` changes in a way the settings below do not record.
CALIBRATION_VERSION = "2"
# Calibration photos go through the detector at this short side, whatever size it later runs at: ranges
# seen at 960 px cover the default 736 px (the measured set-up in docs/benchmarks.md) and larger inputs.
CALIBRATION_SIDE = 960


@dataclass(frozen=True)
class QuantSettings:
    """What `_quantize` passes to onnxruntime.quantization.quantize_static (names of its enums), and the
    opset the fp32 model is converted to first. Part of the cache key."""

    opset: int = 13  # per-channel DequantizeLinear needs opset 13; the shipped detector is opset 11
    quant_format: str = "QDQ"
    per_channel: bool = True
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    # Convolutions carry the cost; element-wise ops and the up-sampling head stay float, which keeps the
    # probability map's low tail (and so DB's precision) close to the fp32 model's.
    op_types_to_quantize: tuple[str, ...] = ("Conv",)
    # The fp32 graph goes through ONNX Runtime's optimiser at this level before quantising (`_pre_optimize`),
    # without the fusions named here, which would hide convolutions from the quantiser ("" = not at all).
    pre_optimize: str = "ORT_ENABLE_EXTENDED"
    pre_optimize_disabled: tuple[str, ...] = ("ConvActivationFusion", "ConvAddActivationFusion")


QUANT_SETTINGS = QuantSettings()


def calibration_files() -> list[Path]:
    """The calibration photos, in name order (the order they are fed to the calibrator)."""
    files = sorted(CALIBRATION_DIR.glob("*.png"))
    if not files:
        raise ModelFileError(f"no calibration photos in {CALIBRATION_DIR} (a broken install?)")
    return files


def calibration_inputs(limit_side: int = CALIBRATION_SIDE) -> list[np.ndarray]:
    """Network inputs for calibration: the shipped photos as the detector would see them."""
    cfg = DetectorConfig(limit_side=limit_side)
    inputs = []
    for path in calibration_files():
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        height, width = bgr.shape[:2]
        inputs.append(preprocess(bgr, resize_for_detection(height, width, cfg)))
    return inputs


def _library_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "none"


def cache_key(fp32_path: Path) -> str:
    """What the int8 file's bytes depend on, hashed: model, calibration photos, settings, library versions."""
    identity = {
        "model": file_sha256(fp32_path),
        "calibration": {path.name: file_sha256(path) for path in calibration_files()},
        "calibration_side": CALIBRATION_SIDE,
        "calibration_version": CALIBRATION_VERSION,
        "settings": asdict(QUANT_SETTINGS),
        "onnx": _library_version("onnx"),
        "onnxruntime": _library_version("onnxruntime", "onnxruntime-gpu"),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def int8_path(fp32_path: Path) -> Path:
    """Where the int8 detector for `fp32_path` is (or will be) cached; builds nothing."""
    return cache_dir() / f"{fp32_path.stem}.int8-{cache_key(fp32_path)}.onnx"


def int8_detector(fp32_path: Path) -> Path:
    """Path of the cached int8 detector for `fp32_path`, building it (about 15 s) when missing.

    The cache key holds everything the bytes depend on (`cache_key`), so every machine builds the same file
    and reruns read the same words.
    """
    target = int8_path(fp32_path)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the int8 detector (once per machine) at %s", target)
    try:
        _quantize(fp32_path, target)
    except Exception as exc:
        raise ModelFileError(f"could not build the int8 detector from {fp32_path}: {exc}") from exc
    return target


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self._items = iter([{name: x} for x in calibration_inputs()])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    settings = QUANT_SETTINGS
    model = onnx.load(str(source))
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        upgraded = Path(tmp) / f"fp32-opset{settings.opset}.onnx"
        onnx.save(version_converter.convert_version(model, settings.opset), str(upgraded))
        optimized = _pre_optimize(upgraded, Path(tmp) / "fp32-optimized.onnx", settings)
        partial = Path(tmp) / "int8.onnx"
        with _calibration_without_memory_patterns():
            quantize_static(
                str(optimized),
                str(partial),
                Reader(input_name),
                quant_format=QuantFormat[settings.quant_format],
                per_channel=settings.per_channel,
                activation_type=QuantType[settings.activation_type],
                weight_type=QuantType[settings.weight_type],
                op_types_to_quantize=list(settings.op_types_to_quantize),
            )
        os.replace(partial, target)  # atomic: concurrent workers never load half a file


_CALIBRATION_LOCK = threading.Lock()


@contextmanager
def _calibration_without_memory_patterns() -> Iterator[None]:
    """ONNX Runtime's calibrator runs the photos (each its own shape) through a session with memory
    patterns on, which plan and keep a buffer set per shape: a build peaked at 3.9 GiB, and at 1.8 GiB
    without them (docs/benchmarks.md), with the same int8 bytes (patterns only plan allocations; the
    calibrator's graph, kernels and ranges are unchanged). `quantize_static` takes no session options,
    so the calibrator's session factory is swapped for the build, as the library writes it but for that."""
    import onnxruntime as ort
    from onnxruntime.quantization import calibrate

    def create_inference_session(self: calibrate.CalibraterBase) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.enable_mem_pattern = False
        self.infer_session = ort.InferenceSession(
            self.augmented_model_path, sess_options=options, providers=self.execution_providers
        )

    with _CALIBRATION_LOCK:
        original = calibrate.CalibraterBase.create_inference_session
        calibrate.CalibraterBase.create_inference_session = create_inference_session
        try:
            yield
        finally:
            calibrate.CalibraterBase.create_inference_session = original


def _pre_optimize(source: Path, target: Path, settings: QuantSettings) -> Path:
    """The fp32 graph as ONNX Runtime would run it, before it is quantised.

    The shipped detector adds each convolution's bias in a separate Add and spells Gelu out as Erf, Div,
    Mul and Add. Quantised as they are, every convolution leaves int8 for that Add, and the Erf chain runs
    as five float ops; ONNX Runtime's own fusions (Conv + Add into the convolution's bias, Gelu, Identity
    removal) give the quantiser convolutions with a bias and one Gelu, which cut the int8 detector's kernel
    time by about a fifth (docs/benchmarks.md). The fp32 outputs stay the same up to float rounding (the
    test checks it). Fusions that turn Conv into FusedConv are disabled: the quantiser would leave it float.
    """
    if not settings.pre_optimize:
        return source
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings.pre_optimize)
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(
        str(source),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(settings.pre_optimize_disabled),
    )
    return target
