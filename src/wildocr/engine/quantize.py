"""An int8 copy of the detector, made once at load time and cached on disk.

Static (QDQ, per-channel) quantisation needs calibration images. They must be deterministic, so that every
worker builds the same model and reruns read the same words: they are rendered by `wildocr.samples`
(scene-text photos drawn with fixed seeds), at the detector's usual input size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from wildocr.engine.detection import DetectorConfig, preprocess, resize_for_detection
from wildocr.engine.models import ModelFileError, file_sha256

log = logging.getLogger(__name__)

CALIBRATION_VERSION = "2"  # bump when the calibration set or settings change
CALIBRATION_IMAGES = 12
# Calibration photos go through the detector at this short side, whatever size it later runs at: ranges
# seen at 960 px cover the default 736 px (the measured set-up in docs/accuracy.md) and larger inputs.
CALIBRATION_SIDE = 960


def cache_dir() -> Path:
    root = os.environ.get("WILDOCR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wildocr"
    )
    return Path(root)


def calibration_inputs(limit_side: int = CALIBRATION_SIDE) -> list[np.ndarray]:
    """Network inputs for calibration: generated photos, normal and hard, as the detector would see them."""
    from wildocr.samples import render_sample

    cfg = DetectorConfig(limit_side=limit_side)
    inputs = []
    for i in range(CALIBRATION_IMAGES):
        rgb = render_sample(seed=20261125, index=i, hard=i % 2 == 1).rgb
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        inputs.append(preprocess(bgr, resize_for_detection(*bgr.shape[:2], cfg)))
    return inputs


def int8_detector(fp32_path: Path) -> Path:
    """Path of the cached int8 detector for `fp32_path`, building it (~15 s on 2 cores) when missing.

    The cache key holds everything the bytes depend on (model, calibration set and its input size), so
    every machine builds the same file and reruns read the same words.
    """
    identity = f"{file_sha256(fp32_path)}:{CALIBRATION_VERSION}:{CALIBRATION_SIDE}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    target = cache_dir() / f"{fp32_path.stem}.int8-{key}.onnx"
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

        def get_next(self) -> dict | None:
            return next(self._items, None)

    model = onnx.load(str(source))
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        # Per-channel DequantizeLinear needs opset 13; the shipped detector is opset 11.
        upgraded = Path(tmp) / "fp32-opset13.onnx"
        onnx.save(version_converter.convert_version(model, 13), str(upgraded))
        partial = Path(tmp) / "int8.onnx"
        quantize_static(
            str(upgraded),
            str(partial),
            Reader(input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # Convolutions carry the cost; element-wise ops and the up-sampling head stay float, which
            # keeps the probability map's low tail (and so DB's precision) close to the fp32 model's.
            op_types_to_quantize=["Conv"],
        )
        os.replace(partial, target)  # atomic: concurrent workers never load half a file
