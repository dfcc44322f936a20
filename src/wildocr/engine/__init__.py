"""The OCR engine: numpy, ONNX Runtime and OpenCV only (no storage, no Airflow)."""

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
