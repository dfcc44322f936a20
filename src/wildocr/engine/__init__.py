"""The OCR engine: photos in, words out (no storage, no Airflow, nothing outside `wildocr.engine`).

It runs on numpy and OpenCV, ONNX Runtime or OpenVINO (engine/backends/), onnx (load-time graph edits and
the int8 detector, engine/quantize.py), pyclipper (DB box growth), Pillow, pillow-heif and simplejpeg
(decoding, engine/imageio.py) and fontTools (the Unicode Script property, engine/scripts.py). The PP-OCR
weights are read from the installed `rapidocr` package; the int8 detector's calibration photos ship in
engine/calibration/.
"""

from wildocr.engine.detection import DetectorConfig
from wildocr.engine.imageio import ImageDecodeError, decode_image
from wildocr.engine.models import ModelFileError
from wildocr.engine.predictor import EngineConfig, OCREngine
from wildocr.engine.recognition import RecognizerConfig
from wildocr.engine.types import Detection, ImageResult, Reading, Word

__all__ = [
    "Detection",
    "DetectorConfig",
    "EngineConfig",
    "ImageDecodeError",
    "ImageResult",
    "ModelFileError",
    "OCREngine",
    "Reading",
    "RecognizerConfig",
    "Word",
    "decode_image",
]
