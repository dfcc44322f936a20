"""`OCREngine`: detect → crop → (orient) → recognise in cross-image batches → words."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from wildocr.engine import backends, models, quantize
from wildocr.engine.crop import crop_quad, is_vertical, pad_quad
from wildocr.engine.detection import STOCK_LIMIT_SIDE, DetectorConfig, TextDetector
from wildocr.engine.orientation import OrientationClassifier
from wildocr.engine.recognition import RecognizerConfig, TextRecognizer
from wildocr.engine.types import Detection, ImageResult, Reading, Word
from wildocr.engine.verify import STOCK_VERIFIER, Verifier, word_features
from wildocr.engine.words import line_words

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class EngineConfig:
    """Every knob of the engine a user may turn, with defaults that hold for photos in general.

    `wildocr ocr --option KEY=VALUE` and the DAG's `engine_options` reach these fields by name
    (`with_options`): `det_*` keys set `detector`, `rec_*` keys set `recognizer`.

    Attributes:
        detector: detection settings (`DetectorConfig`).
        recognizer: recognition batching (`RecognizerConfig`).
        pad_ratio: crop padding, a fraction of the box size (the reference set-up's 1.5%): recognisers
            read better with a little margin around the glyphs.
        use_orientation: run the 0/180° classifier on the crops, so upside-down text is read too.
        min_confidence: words whose confidence (the mean of their characters' CTC max-probabilities) is
            lower are never kept: below it they are mostly unreadable or not text (docs/benchmarks.md).
        verify_words: above that floor the word verifier (engine/verify.py) decides; False = the floor
            alone (the build before it used min_confidence=0.7 alone).
        min_text_probability: the verifier keeps a word only if it is this likely to be text ...
        min_reading_probability: ... and its reading this likely to be right.
        box_height_scale: reported word boxes keep this share of the (padded-for-reading) box height, so
            they sit tight on the glyphs as word-level annotations do; crops still use the full box.
        split_at_symbols: words also end at separators (·, •, |), arrows and pictographs, and where Latin
            meets another script (engine/words.py); False = at spaces only.
        trim_to_characters: a word's box spans its characters' CTC positions (± half a pitch) even when
            the line holds one word, so an unread logo or arrow beside it stays out; False = the line box.
        device: auto | cpu | cuda (auto: CUDA when ONNX Runtime offers it).
        workers: images (and recognition batches) run at once on CPU; 0 = one per core on CPU, 1 on
            GPU. Independent calls scale better than one call spread over all cores.
        threads: intra-op threads per inference call; 0 = cores // workers.
        backend: auto | onnxruntime | openvino (engine/backends/). ONNX Runtime by default: OpenVINO
            needs less CPU per photo but its words are not the same (docs/benchmarks.md), and accuracy
            comes first. auto = OpenVINO on CPU when installed.
        detect_workers: images whose detector network runs at once on CPU, each on
            cores // detect_workers threads; 0 = workers. One at a time keeps one image's activations
            alive instead of `workers` of them (docs/benchmarks.md), at some
            wall time; recognition batches still run on `workers` threads. With ONNX Runtime on CPU a
            detection that starts while a recognition batch runs uses `threads` instead (`_Slotted`).
        model_dir: a model folder (`models.load_model_folder`, docs/models.md) whose fine-tuned detector
            and/or recognizer (and word verifier, when it carries one) replace the stock ones; None = the
            stock weights of the rapidocr wheel. Not a flat option: `--model-dir` and the DAGs'
            `model_dir` Param give it.

    ONNX Runtime's memory settings are not here: they are `backends.SessionOptions` (pass one to
    `OCREngine` to change them for a measurement).
    """

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    pad_ratio: float = 0.015
    use_orientation: bool = True
    min_confidence: float = 0.5
    verify_words: bool = True
    min_text_probability: float = 0.5
    min_reading_probability: float = 0.25
    box_height_scale: float = 0.7
    split_at_symbols: bool = True
    trim_to_characters: bool = True
    device: str = "auto"  # auto | cpu | cuda
    workers: int = 0
    threads: int = 0
    backend: str = "onnxruntime"  # auto | onnxruntime | openvino
    detect_workers: int = 1
    model_dir: str | None = None

    def flat(self) -> dict[str, Any]:
        """Every flat option and its value, the inverse of `with_options` (`model_dir` is not one)."""
        flat: dict[str, Any] = {}
        for prefix, part in (("det_", self.detector), ("rec_", self.recognizer), ("", self)):
            for f in fields(part):
                if part is self and f.name in ("detector", "recognizer", "model_dir"):
                    continue
                flat[prefix + f.name] = getattr(part, f.name)
        return flat

    def with_options(self, **options: Any) -> EngineConfig:
        """A copy with flat options applied: `det_*` go to the detector, `rec_*` to the recognizer."""
        det = {k[4:]: v for k, v in options.items() if k.startswith("det_")}
        rec = {k[4:]: v for k, v in options.items() if k.startswith("rec_")}
        rest = {k: v for k, v in options.items() if not k.startswith(("det_", "rec_"))}
        return replace(
            self, detector=replace(self.detector, **det), recognizer=replace(self.recognizer, **rec), **rest
        )


class _Slots:
    """The engine's `workers` slots, and how many calls hold one right now."""

    def __init__(self, workers: int) -> None:
        self._free = threading.Semaphore(workers)
        self._lock = threading.Lock()
        self.busy = 0

    def acquire(self) -> int:
        """Take a slot (waiting for one); returns how many calls hold one, this one included."""
        self._free.acquire()
        with self._lock:
            self.busy += 1
            return self.busy

    def release(self) -> None:
        with self._lock:
            self.busy -= 1
        self._free.release()

    def __enter__(self) -> int:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Slotted:
    """A session whose calls take one of the engine's `workers` slots while they run.

    Detection of one chunk runs beside recognition of the previous one (pipeline/outcome.py): without
    slots the detector plus `workers` recognition batches would hold their activations at once; with them
    a detection and one batch do, and two batches only once no detection runs.

    `alone`, when given, is the same model on more threads, run when no other call holds a slot: on two
    cores a detection on both threads costs about a quarter more CPU time than on one (threads wait for
    each other within each op), which is worth paying only while the other core has nothing else to do.
    """

    def __init__(
        self, session: backends.Session, slots: _Slots, alone: backends.Session | None = None
    ) -> None:
        self.session = session
        self._slots = slots
        self._alone = alone

    def get_inputs(self) -> Sequence[backends.ModelInput]:
        return self.session.get_inputs()

    def get_providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._slots as busy:
            session = self._alone if self._alone is not None and busy == 1 else self.session
            return session.run(output_names, feeds)


def thread_plan(config: EngineConfig, on_gpu: bool, cores: int | None = None) -> dict[str, int]:
    """How the engine splits the cores: `workers` recognition calls at once of `threads` intra-op threads
    each, `detect_workers` detections at once of `det_threads` each (the benchmark records it)."""
    cores = cores or os.cpu_count() or 1
    workers = config.workers or (1 if on_gpu else cores)
    threads = config.threads or max(1, cores // workers)
    detect_workers = min(config.detect_workers or workers, workers)
    det_threads = max(1, threads * workers // detect_workers)
    return {
        "workers": workers,
        "threads": threads,
        "detect_workers": detect_workers,
        "det_threads": det_threads,
    }


class OCREngine:
    """Loads the three PP-OCR models once and reads batches of images.

    `read` runs the whole pipeline; `detect`, `crop`, `recognize` and `assemble` run its stages one by one
    (the staged Airflow tasks). Work within one call runs on the engine's own worker threads.

    Args:
        config: the engine's settings (`EngineConfig()` when None).
        lazy: load each model on first use, for processes that run one stage only (cropping needs no
            model at all, recognition no detector). The default loads all of them now, so that a missing
            or corrupt model file fails at start-up, before any image is read.
        session_options: ONNX Runtime memory and thread settings to start from (`backends.SessionOptions`;
            its defaults when None). Device, threads, backend and streams always come from `config`; this
            is for measurements, not for users.
        detector_session: detect with this session instead of the model file's. Training reads its
            held-out photos with the weights of each epoch this way, without writing a file
            (train/fit.py); not for users either.

    Raises:
        ModelFileError: a model file is missing or unreadable (at once unless `lazy`).
        ValueError: an unknown device, backend or detector precision, or a negative det_limit_side.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        lazy: bool = False,
        session_options: backends.SessionOptions | None = None,
        detector_session: backends.Session | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self._detector_session = detector_session
        on_gpu = backends.available_providers(self.config.device)[0] == "CUDAExecutionProvider"
        plan = thread_plan(self.config, on_gpu)
        self.workers, threads = plan["workers"], plan["threads"]
        self.backend = backends.resolve_backend(self.config.backend, on_gpu)
        self._options = replace(
            session_options or backends.SessionOptions(),
            device=self.config.device,
            # OpenVINO: one pool of workers x threads cores, split into one stream per worker thread.
            intra_op_threads=threads * self.workers if self.backend == "openvino" else threads,
            backend=self.backend,
            streams=self.workers,
        )
        self.detect_workers = plan["detect_workers"]
        self._det_options = self._options
        if self.detect_workers < self.workers:  # fewer detections at once, each on more cores
            if self.backend == "openvino":  # one pool of all cores already: fewer streams over it
                self._det_options = replace(self._options, streams=self.detect_workers)
            else:
                self._det_options = replace(self._options, intra_op_threads=plan["det_threads"])
        # A model folder is checked now even when lazy: a broken one fails before any image is read.
        self.model_folder = models.load_model_folder(self.config.model_dir) if self.config.model_dir else None
        folder = self.model_folder
        if self.config.detector.limit_side < 0:
            raise ValueError(
                f"det_limit_side must be 0 (the detector's own) or a size in pixels, not "
                f"{self.config.detector.limit_side}"
            )
        if not self.config.detector.limit_side:  # the detector's own input size (DetectorConfig says why)
            own_side = (folder and folder.det_limit_side) or STOCK_LIMIT_SIDE
            self.config = self.config.with_options(det_limit_side=own_side)
        self._det_path = (folder and folder.det) or models.model_path(models.DET_MODEL)
        self._rec_path = (folder and folder.rec) or models.model_path(models.REC_MODEL)
        self._cls_path = models.model_path(models.CLS_MODEL)
        self.verifier: Verifier = (folder and folder.verifier) or STOCK_VERIFIER
        precision = self.config.detector.precision
        if precision == "auto":
            precision = "fp32" if on_gpu else "int8"
        if precision not in ("fp32", "int8"):
            raise ValueError(f"detector precision must be auto, fp32 or int8, not {precision!r}")
        self._det_precision = precision
        self._expected_provider = (
            backends.OPENVINO_PROVIDER
            if self.backend == "openvino"
            else backends.available_providers(self.config.device)[0]
        )
        self._load_lock = threading.Lock()
        self._slots = _Slots(self.workers)
        self._det_model: Path | None = None
        self._detector: TextDetector | None = None
        self._recognizer: TextRecognizer | None = None
        self._classifier: OrientationClassifier | None = None
        self._classifier_loaded = False
        self._pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="wildocr") if self.workers > 1 else None
        )
        if not lazy:
            self.load()
        log.info(
            "wildocr engine on %s via %s (%s %s, %s), %d workers x %d threads%s",
            self.provider,
            self.backend,
            self._model_name(self._det_path),
            precision,
            self._model_name(self._rec_path),
            self.workers,
            threads,
            " (models load on first use)" if lazy else "",
        )

    def load(self, *stages: str) -> OCREngine:
        """Load the models of `stages` ("detect", "recognize"; all when none given) now, so that a bad
        model file fails a task before it reads any image (what the constructor does unless lazy)."""
        for stage in stages or ("detect", "recognize"):
            if stage == "detect":
                _ = self.detector
            elif stage == "recognize":
                _ = self.recognizer, self.classifier
            else:
                raise ValueError(f"stage must be detect or recognize, not {stage!r}")
        return self

    # -- models, each loaded once on first use ---------------------------------------------------------
    def _detector_model(self) -> Path:
        if self._det_model is None:
            self._det_model = (
                quantize.int8_detector(self._det_path) if self._det_precision == "int8" else self._det_path
            )
        return self._det_model

    @property
    def detector(self) -> TextDetector:
        if self._detector is None:
            with self._load_lock:
                if self._detector is None and self._detector_session is not None:
                    slotted = _Slotted(self._detector_session, self._slots)
                    self._detector = TextDetector(slotted, self.config.detector)
                elif self._detector is None:
                    model = self._detector_model()
                    wide = backends.create_session(model, self._det_options)
                    if self._det_options.intra_op_threads > self._options.intra_op_threads and (
                        self.backend == "onnxruntime" and self.provider == "CPUExecutionProvider"
                    ):  # one thread while recognition runs beside it, all of them when it runs alone
                        narrow = backends.create_session(model, self._options)
                        slotted = _Slotted(narrow, self._slots, alone=wide)
                    else:
                        slotted = _Slotted(wide, self._slots)
                    self._detector = TextDetector(slotted, self.config.detector)
        return self._detector

    @property
    def recognizer(self) -> TextRecognizer:
        if self._recognizer is None:
            with self._load_lock:
                if self._recognizer is None:
                    rec_model, charset = models.recognizer_model(self._rec_path)
                    session = backends.create_session(rec_model, self._options)
                    self._recognizer = TextRecognizer(
                        _Slotted(session, self._slots), charset, self.config.recognizer
                    )
        return self._recognizer

    @property
    def classifier(self) -> OrientationClassifier | None:
        if not self._classifier_loaded:
            with self._load_lock:
                if not self._classifier_loaded:
                    if self.config.use_orientation:
                        self._classifier = OrientationClassifier(
                            backends.create_session(self._cls_path, self._options)
                        )
                    self._classifier_loaded = True
        return self._classifier

    @property
    def provider(self) -> str:
        """The execution provider detection runs on (the loaded session's own answer once it exists)."""
        if self._detector is not None:
            return self._detector.session.get_providers()[0]
        return self._expected_provider

    def _model_name(self, path: Path) -> str:
        """A model file as the tables name it: the stock file's name, or `<folder name>/<file>`."""
        folder = self.model_folder
        return folder.label(path) if folder and path in (folder.det, folder.rec) else path.name

    @property
    def model_info(self) -> dict[str, str]:
        """Model names and file hashes, as written into every row. Builds and loads nothing.

        The detector's keys (det_model, det_sha256) appear only once its model file is resolved: after
        `load("detect")`, `load()` (what the constructor does unless lazy) or any detection. Before that,
        knowing the int8 file's hash could mean building it (about 15 s on a cold cache), so a lazy engine
        that has not detected yet reports rec_* and cls_* only. det_sha256 is the hash of the file that
        runs: the int8 file itself when quantised. cls_* are empty strings when orientation is off. With a
        model folder, det_model / rec_model name the folder's files (`<folder name>/det.onnx`).
        verifier_sha256 names the word verifier that chose the words (a folder's own, or the stock one;
        empty with `verify_words` off): same weights with another verifier keep other words.
        engine_options is `options_json()`: the same weights with other options read other words too.
        """
        use_cls = self.config.use_orientation
        info = {}
        if self._det_model is not None:
            suffix = " (int8)" if self._det_precision == "int8" else ""
            info["det_model"] = self._model_name(self._det_path) + suffix
            info["det_sha256"] = models.file_sha256(self._det_model)
        info.update(
            rec_model=self._model_name(self._rec_path),
            rec_sha256=models.file_sha256(self._rec_path),
            cls_model=self._cls_path.name if use_cls else "",
            cls_sha256=models.file_sha256(self._cls_path) if use_cls else "",
            verifier_sha256=self.verifier.sha256() if self.config.verify_words else "",
            engine_options=self.options_json(),
        )
        return info

    def options_json(self) -> str:
        """The flat options this engine runs with that differ from `EngineConfig()`'s, as canonical JSON.

        `det_limit_side` is always there: its default (0) is resolved when the engine starts, to the
        stock size or the size a model folder names, which the model hashes do not say.
        """
        defaults = EngineConfig().flat()
        changed = {k: v for k, v in self.config.flat().items() if v != defaults[k]}
        return json.dumps(changed, sort_keys=True, separators=(",", ":"))

    def _map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        """map() over the engine's worker threads (every backend's sessions are safe to call concurrently)."""
        return list(self._pool.map(fn, items)) if self._pool else [fn(x) for x in items]

    def map_images(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """map() over images the way detection runs them: one at a time on all the cores unless
        `detect_workers` allows several (the fused path detects and crops each image through this)."""
        return self._map(fn, items) if self.detect_workers > 1 else [fn(item) for item in items]

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
        reading: the classifier alone turns some upright words on real photos (docs/benchmarks.md).
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

    def candidate_words(
        self,
        image_size: tuple[int, int],
        detections: Sequence[Detection],
        readings: Sequence[Reading],
    ) -> list[list[tuple[Word, np.ndarray]]]:
        """Each line's words with their verifier features, before any is dropped (`bench/fit_verifier.py`
        fits the verifier on these); words of line k carry line id k."""
        lines = []
        quads = self.padded_quads(image_size, detections)
        for k, (det, quad, reading) in enumerate(zip(detections, quads, readings, strict=True)):
            turns = (1 if is_vertical(quad) else 0) + (2 if reading.flipped else 0)
            line = line_words(
                det,
                quad,
                reading,
                k,
                quarter_turns=turns,
                height_scale=self.config.box_height_scale,
                split_at_symbols=self.config.split_at_symbols,
                trim_to_characters=self.config.trim_to_characters,
            )
            lines.append(
                [(w, word_features(w.text, chars, w.det_score, reading.confidence)) for w, chars in line]
            )
        return lines

    def keeps(self, word: Word, features: np.ndarray) -> bool:
        """Whether a candidate word goes into the results (the confidence floor, then the verifier)."""
        if word.confidence < self.config.min_confidence:
            return False
        if not self.config.verify_words:
            return True
        is_text, read_right = self.verifier.probabilities(features)
        cfg = self.config
        return is_text >= cfg.min_text_probability and read_right >= cfg.min_reading_probability

    def assemble(
        self, image_size: tuple[int, int], detections: Sequence[Detection], readings: Sequence[Reading]
    ) -> list[Word]:
        """Split lines into words and keep the verified ones; line ids follow reading order."""
        words: list[Word] = []
        line_id = 0
        for line in self.candidate_words(image_size, detections, readings):
            kept = [replace(w, line_id=line_id) for w, features in line if self.keeps(w, features)]
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
        detected = self.map_images(detect_and_crop, images)
        for result, dets, image_crops in detected:
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
