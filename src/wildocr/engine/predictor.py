"""`OCREngine`: detect → crop → (orient) → recognise in cross-image batches → words."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from wildocr.engine import models
from wildocr.engine.crop import crop_quad, is_vertical, pad_quad
from wildocr.engine.detection import DetectorConfig, TextDetector
from wildocr.engine.orientation import OrientationClassifier
from wildocr.engine.recognition import RecognizerConfig, TextRecognizer
from wildocr.engine.types import Detection, ImageResult, Reading, Word
from wildocr.engine.words import split_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """Every knob of the engine, with defaults that hold for photos in general."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    pad_ratio: float = 0.015  # crop padding, fraction of the box size (the reference set-up's 1.5%)
    use_orientation: bool = True  # 0/180° classifier on the crops
    min_confidence: float = 0.5  # lines read with a lower mean confidence are dropped as junk
    # Reported word boxes keep this share of the (unclipped, padded-for-reading) box height, so they sit
    # tight on the glyphs like word-level annotations do; crops still use the full box.
    box_height_scale: float = 0.7
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # ONNX Runtime intra-op threads per session; 0 = all cores

    def with_options(self, **options: object) -> EngineConfig:
        """A copy with flat options applied: `det_*` go to the detector, `rec_*` to the recognizer."""
        det = {k[4:]: v for k, v in options.items() if k.startswith("det_")}
        rec = {k[4:]: v for k, v in options.items() if k.startswith("rec_")}
        rest = {k: v for k, v in options.items() if not k.startswith(("det_", "rec_"))}
        return replace(
            self, detector=replace(self.detector, **det), recognizer=replace(self.recognizer, **rec), **rest
        )


class OCREngine:
    """Loads the three PP-OCR models once and reads batches of images."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        options = models.SessionOptions(device=self.config.device, intra_op_threads=self.config.threads)
        det_path = models.model_path(models.DET_MODEL)
        rec_path = models.model_path(models.REC_MODEL)
        cls_path = models.model_path(models.CLS_MODEL)
        det_session = models.create_session(det_path, options)
        rec_session = models.create_session(models.with_device_argmax(rec_path), options)
        self.detector = TextDetector(det_session, self.config.detector)
        self.recognizer = TextRecognizer(
            rec_session, models.recognizer_charset(rec_session), self.config.recognizer
        )
        self.classifier = (
            OrientationClassifier(models.create_session(cls_path, options))
            if self.config.use_orientation
            else None
        )
        self.provider = det_session.get_providers()[0]
        self.model_info = {
            "det_model": det_path.name,
            "det_sha256": models.file_sha256(det_path),
            "rec_model": rec_path.name,
            "rec_sha256": models.file_sha256(rec_path),
            "cls_model": cls_path.name if self.config.use_orientation else "",
            "cls_sha256": models.file_sha256(cls_path) if self.config.use_orientation else "",
        }
        log.info("wildocr engine on %s (%s, %s)", self.provider, det_path.name, rec_path.name)

    # -- the three stages, usable one by one (the Airflow operators stage them) --------------------
    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detector(image)

    def padded_quads(self, image_size: tuple[int, int], detections: Sequence[Detection]) -> list[np.ndarray]:
        return [pad_quad(np.asarray(d.quad), self.config.pad_ratio, image_size) for d in detections]

    def crop(self, image: np.ndarray, detections: Sequence[Detection]) -> list[np.ndarray]:
        return [crop_quad(image, q) for q in self.padded_quads(image.shape[:2], detections)]

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        """Read crops (from any number of images) in bucketed batches; upside-down crops are turned first."""
        if not crops:
            return []
        flipped = [False] * len(crops)
        if self.classifier is not None:
            crops, flipped = self.classifier(crops)
        readings = self.recognizer(crops)
        return [replace(r, flipped=True) if f else r for r, f in zip(readings, flipped, strict=True)]

    def assemble(
        self, image_size: tuple[int, int], detections: Sequence[Detection], readings: Sequence[Reading]
    ) -> list[Word]:
        """Drop junk lines, split the rest into words; line ids follow reading order."""
        words: list[Word] = []
        quads = self.padded_quads(image_size, detections)
        line_id = 0
        for det, quad, reading in zip(detections, quads, readings, strict=True):
            if not reading.text.strip() or reading.confidence < self.config.min_confidence:
                continue
            turns = (1 if is_vertical(quad) else 0) + (2 if reading.flipped else 0)
            words.extend(
                split_line(
                    det,
                    quad,
                    reading,
                    line_id,
                    quarter_turns=turns,
                    height_scale=self.config.box_height_scale,
                )
            )
            line_id += 1
        return words

    # -- fused path ----------------------------------------------------------------------------------
    def read(self, images: Sequence[np.ndarray]) -> list[ImageResult]:
        """Detect every image, then recognise all their crops together in large batches."""
        results: list[ImageResult] = []
        all_dets: list[list[Detection]] = []
        crops: list[np.ndarray] = []
        for image in images:
            start = time.perf_counter()
            dets = self.detect(image)
            image_crops = self.crop(image, dets)
            results.append(
                ImageResult(
                    width=image.shape[1], height=image.shape[0], det_seconds=time.perf_counter() - start
                )
            )
            all_dets.append(dets)
            crops.extend(image_crops)
        start = time.perf_counter()
        readings = self.recognize(crops)
        rec_total = time.perf_counter() - start
        offset = 0
        for result, dets in zip(results, all_dets, strict=True):
            mine = readings[offset : offset + len(dets)]
            offset += len(dets)
            result.words = self.assemble((result.height, result.width), dets, mine)
            # Recognition ran for all images at once: charge each image its share of the crops.
            result.rec_seconds = rec_total * len(dets) / max(len(crops), 1)
        return results
