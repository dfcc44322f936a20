"""`OCREngine`: detect → crop → (orient) → recognise in cross-image batches → words."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from wildocr.engine import backends, models, quantize
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
    # Words read with a lower confidence (mean of their characters' CTC max-probabilities) are dropped:
    # below it they are mostly unreadable or non-text (measured in docs/accuracy.md).
    min_confidence: float = 0.7
    # Reported word boxes keep this share of the (unclipped, padded-for-reading) box height, so they sit
    # tight on the glyphs like word-level annotations do; crops still use the full box.
    box_height_scale: float = 0.7
    # Words also end at separators (·, •, |), arrows and pictographs, and where Latin meets another script
    # (engine/words.py); False = spaces only.
    split_at_symbols: bool = True
    # A word's box spans its characters' CTC positions (± half a pitch) even when the line holds one word,
    # so an unread logo or arrow beside it stays out of the box; False = the whole line box.
    trim_to_characters: bool = True
    device: str = "auto"  # auto | cpu | cuda
    # CPU parallelism: `workers` images (and recognition batches) run at once, each ONNX Runtime call on
    # `threads` intra-op threads. Independent calls scale better than one call spread over all cores.
    workers: int = 0  # 0 = one per core on CPU, 1 on GPU
    threads: int = 0  # 0 = cores // workers
    # Inference backend (engine/backends.py): auto = OpenVINO on CPU when installed, else ONNX Runtime.
    # ONNX Runtime by default: OpenVINO needs ~25% less CPU per photo, but its words are not the same
    # (end-to-end hmean -0.007 on 200 check photos, docs/performance.md), and accuracy comes first.
    backend: str = "onnxruntime"  # auto | onnxruntime | openvino
    # ONNX Runtime's CPU arena / memory patterns: faster re-runs of one shape, but a buffer plan per input
    # shape that is never returned (most of the peak RSS with OCR's many shapes). Measured off by default.
    ort_cpu_arena: bool = False
    ort_mem_pattern: bool = False

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
        on_gpu = models.available_providers(self.config.device)[0] == "CUDAExecutionProvider"
        cores = os.cpu_count() or 1
        self.workers = self.config.workers or (1 if on_gpu else cores)
        threads = self.config.threads or max(1, cores // self.workers)
        self.backend = backends.resolve_backend(self.config.backend, on_gpu)
        options = models.SessionOptions(
            device=self.config.device,
            # OpenVINO: one pool of workers x threads cores, split into one stream per worker thread.
            intra_op_threads=threads * self.workers if self.backend == "openvino" else threads,
            backend=self.backend,
            streams=self.workers,
            cpu_arena=self.config.ort_cpu_arena,
            mem_pattern=self.config.ort_mem_pattern,
        )
        det_path = models.model_path(models.DET_MODEL)
        rec_path = models.model_path(models.REC_MODEL)
        cls_path = models.model_path(models.CLS_MODEL)
        precision = self.config.detector.precision
        if precision == "auto":
            precision = "fp32" if on_gpu else "int8"
        if precision not in ("fp32", "int8"):
            raise ValueError(f"detector precision must be auto, fp32 or int8, not {precision!r}")
        det_model = quantize.int8_detector(det_path) if precision == "int8" else det_path
        det_session = models.create_session(det_model, options)
        rec_model = models.with_device_argmax(rec_path)
        rec_session = models.create_session(rec_model, options)
        self.detector = TextDetector(det_session, self.config.detector)
        self.recognizer = TextRecognizer(
            rec_session, models.recognizer_charset(rec_model), self.config.recognizer
        )
        self.classifier = (
            OrientationClassifier(models.create_session(cls_path, options))
            if self.config.use_orientation
            else None
        )
        self.provider = det_session.get_providers()[0]
        self._pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="wildocr") if self.workers > 1 else None
        )
        self.model_info = {
            "det_model": det_path.name + (" (int8)" if precision == "int8" else ""),
            "det_sha256": models.file_sha256(det_model),  # the int8 file itself when quantised
            "rec_model": rec_path.name,
            "rec_sha256": models.file_sha256(rec_path),
            "cls_model": cls_path.name if self.config.use_orientation else "",
            "cls_sha256": models.file_sha256(cls_path) if self.config.use_orientation else "",
        }
        log.info(
            "wildocr engine on %s via %s (%s %s, %s), %d workers x %d threads",
            self.provider,
            self.backend,
            det_path.name,
            precision,
            rec_path.name,
            self.workers,
            threads,
        )

    def _map(self, fn, items):
        """map() over the engine's worker threads (ONNX Runtime sessions are safe to call concurrently)."""
        return list(self._pool.map(fn, items)) if self._pool else [fn(x) for x in items]

    # -- the three stages, usable one by one (the Airflow operators stage them) --------------------
    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detector(image)

    def padded_quads(self, image_size: tuple[int, int], detections: Sequence[Detection]) -> list[np.ndarray]:
        return [pad_quad(np.asarray(d.quad), self.config.pad_ratio, image_size) for d in detections]

    def crop(self, image: np.ndarray, detections: Sequence[Detection]) -> list[np.ndarray]:
        return [crop_quad(image, q) for q in self.padded_quads(image.shape[:2], detections)]

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        """Read crops (from any number of images) in bucketed batches.

        Crops the orientation classifier calls upside-down are read both ways and keep the more confident
        reading: the classifier alone turns ~2% of upright words on real photos (docs/accuracy.md).
        """
        if not crops:
            return []
        flagged = (
            [i for i, f in enumerate(self.classifier.upside_down(crops)) if f] if self.classifier else []
        )
        turned = [cv2.rotate(crops[i], cv2.ROTATE_180) for i in flagged]
        readings = self.recognizer([*crops, *turned], self._map)
        chosen = readings[: len(crops)]
        for i, alternative in zip(flagged, readings[len(crops) :], strict=True):
            if alternative.confidence > chosen[i].confidence:
                chosen[i] = replace(alternative, flipped=True)
        return chosen

    def assemble(
        self, image_size: tuple[int, int], detections: Sequence[Detection], readings: Sequence[Reading]
    ) -> list[Word]:
        """Split lines into words and drop low-confidence ones; line ids follow reading order."""
        words: list[Word] = []
        quads = self.padded_quads(image_size, detections)
        line_id = 0
        for det, quad, reading in zip(detections, quads, readings, strict=True):
            turns = (1 if is_vertical(quad) else 0) + (2 if reading.flipped else 0)
            line = split_line(
                det,
                quad,
                reading,
                line_id,
                quarter_turns=turns,
                height_scale=self.config.box_height_scale,
                split_at_symbols=self.config.split_at_symbols,
                trim_to_characters=self.config.trim_to_characters,
            )
            kept = [w for w in line if w.confidence >= self.config.min_confidence]
            if kept:
                words.extend(kept)
                line_id += 1
        return words

    # -- fused path ----------------------------------------------------------------------------------
    def read(self, images: Sequence[np.ndarray]) -> list[ImageResult]:
        """Detect every image, then recognise all their crops together in large batches."""

        def detect_and_crop(image: np.ndarray) -> tuple[ImageResult, list[Detection], list[np.ndarray]]:
            start = time.perf_counter()
            dets = self.detect(image)
            image_crops = self.crop(image, dets)
            result = ImageResult(image.shape[1], image.shape[0], det_seconds=time.perf_counter() - start)
            return result, dets, image_crops

        results: list[ImageResult] = []
        all_dets: list[list[Detection]] = []
        crops: list[np.ndarray] = []
        for result, dets, image_crops in self._map(detect_and_crop, images):
            results.append(result)
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
