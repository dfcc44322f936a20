"""The real PP-OCR models on real pixels: generated photos with known words must keep being read.

Tolerance: a ground-truth word counts as read when a predicted word box overlaps it with IoU > 0.5 and
its text is exactly equal (case-sensitive). The generator's photos are read ~100% today; the thresholds
below leave room for one or two hard misses, not for a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from shapely.geometry import Polygon

from include.sample_data import generate
from wildocr.engine import EngineConfig, OCREngine, decode_image
from wildocr.engine.backends import SessionOptions

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont


def _iou(a, b) -> float:
    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union else 0.0


def read_rate(engine: OCREngine, folder: Path, truth: list[dict]) -> tuple[float, list[str]]:
    images = [decode_image((folder / line["image"]).read_bytes()) for line in truth]
    results = engine.read(images)
    total, misses = 0, []
    for line, result in zip(truth, results, strict=True):
        for gt in line["words"]:
            total += 1
            hits = [w for w in result.words if _iou(w.poly, gt["poly"]) > 0.5]
            if not any(w.text == gt["text"] for w in hits):
                misses.append(f"{line['image']}: {gt['text']!r} -> {[w.text for w in hits]}")
    return 1 - len(misses) / total, misses


def test_reads_generated_photos(ocr_engine: OCREngine, tmp_path: Path) -> None:
    truth = generate(str(tmp_path), count=4, seed=11)
    rate, misses = read_rate(ocr_engine, tmp_path, truth)
    assert rate >= 0.9, misses


def test_reads_small_blurred_tilted_text(ocr_engine: OCREngine, tmp_path: Path) -> None:
    """Accuracy regression guard (small, blurred, tilted, low-contrast words on cluttered backgrounds)."""
    truth = generate(str(tmp_path), count=4, seed=23, hard=True)
    rate, misses = read_rate(ocr_engine, tmp_path, truth)
    assert rate >= 0.85, misses


def _sign(height: int, write: Callable[[ImageDraw.ImageDraw, ImageFont.FreeTypeFont], None]) -> np.ndarray:
    """A 960-px-wide blue sign, `write` drawing its white text in DejaVu Sans Bold at 44 px (a font with
    arrows), as a camera gives it: BGR with a little sensor noise (a fixed seed)."""
    from PIL import Image, ImageDraw, ImageFont

    from wildocr.samples import font_paths

    font = ImageFont.truetype(next(p for p in font_paths() if p.endswith("DejaVuSans-Bold.ttf")), 44)
    img = Image.new("RGB", (960, height), (40, 70, 150))
    write(ImageDraw.Draw(img), font)
    rng = np.random.default_rng(5)
    pixels = np.asarray(img, dtype=np.float32)[:, :, ::-1] + rng.normal(0, 4, (height, 960, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _arrow_sign(lines: list[str]) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """A sign with one line of text per item, and the x extent of every drawn arrow."""
    arrows: dict[str, tuple[float, float]] = {}

    def write(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont) -> None:
        for row, text in enumerate(lines):
            x, y = 80, 80 + 110 * row
            draw.text((x, y), text, font=font, fill=(245, 245, 240))
            for i, ch in enumerate(text):
                if ch in "←→↑":
                    left = x + draw.textlength(text[:i], font=font)
                    arrows[text] = (left, left + draw.textlength(ch, font=font))

    return _sign(540, write), arrows


def test_arrows_on_signs_stay_out_of_words(ocr_engine: OCREngine) -> None:
    """Sign arrows read as characters ("←Bus", "EXIT →") are dropped and kept out of the word boxes."""
    image, arrows = _arrow_sign(["←Bus Stop", "EXIT →", "↑ Toilet"])
    words = ocr_engine.read([image])[0].words
    texts = [w.text for w in words]
    assert {"Bus", "Stop", "EXIT", "Toilet"} <= set(texts), texts
    assert not any(ch in "←→↑" for t in texts for ch in t), texts
    bus = next(w for w in words if w.text == "Bus")
    assert bus.bbox[0] >= arrows["←Bus Stop"][1] - 4, (bus.bbox, arrows)  # starts where the arrow ends
    before = OCREngine(EngineConfig(device="cpu", split_at_symbols=False, trim_to_characters=False))
    old = [w.text for w in before.read([image])[0].words]
    assert any(ch in "←→↑" for t in old for ch in t), old  # what the switch changes: arrows were words


def _tight_words(pairs: list[tuple[str, str, int]]) -> np.ndarray:
    """A sign with one line per (first word, second word, gap in pixels)."""

    def write(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont) -> None:
        for row, (first, second, gap) in enumerate(pairs):
            y = 70 + 110 * row
            draw.text((80, y), first, font=font, fill=(245, 245, 240))
            x = 80 + draw.textlength(first, font=font) + gap
            draw.text((x, y), second, font=font, fill=(245, 245, 240))

    return _sign(120 + 110 * len(pairs), write)


def test_tightly_set_words_come_apart(ocr_engine: OCREngine) -> None:
    """Gaps of 6-7 px between 44 px capitals: greedy CTC reads blank there, the space class has about a
    third of the probability (RecognizerConfig.space_prob)."""
    image = _tight_words([("BOX", "OFFICE", 6), ("PREMIUM", "GIFTS", 7)])
    texts = [w.text for w in ocr_engine.read([image])[0].words]
    assert {"BOX", "OFFICE", "PREMIUM", "GIFTS"} <= set(texts), texts
    argmax_only = OCREngine(EngineConfig(device="cpu").with_options(rec_space_prob=None))
    glued = [w.text for w in argmax_only.read([image])[0].words]
    assert {"BOXOFFICE", "PREMIUMGIFTS"} <= set(glued), glued  # what the option changes


def test_upside_down_photo_is_read_by_the_orientation_classifier(
    ocr_engine: OCREngine, tmp_path: Path
) -> None:
    truth = generate(str(tmp_path), count=1, seed=5)
    image = decode_image((tmp_path / truth[0]["image"]).read_bytes())
    upright = {w.text for w in ocr_engine.read([image])[0].words}
    flipped = {w.text for w in ocr_engine.read([np.ascontiguousarray(image[::-1, ::-1])])[0].words}
    expected = {w["text"] for w in truth[0]["words"]}
    assert len(upright & expected) >= 0.9 * len(expected)
    assert len(flipped & expected) >= 0.7 * len(expected)


def test_results_carry_geometry_and_scores(ocr_engine: OCREngine, tmp_path: Path) -> None:
    truth = generate(str(tmp_path), count=1, seed=3)
    image = decode_image((tmp_path / truth[0]["image"]).read_bytes())
    result = ocr_engine.read([image])[0]
    assert (result.width, result.height) == (image.shape[1], image.shape[0])
    assert result.words
    for word in result.words:
        xs = [p[0] for p in word.poly]
        ys = [p[1] for p in word.poly]
        assert word.bbox == (min(xs), min(ys), max(xs), max(ys))
        assert 0 < word.confidence <= 1 and 0 < word.det_score <= 1
        assert 0 <= word.bbox[0] <= word.bbox[2] <= image.shape[1]
    assert (
        ocr_engine.model_info["rec_model"].endswith(".onnx")
        and len(ocr_engine.model_info["rec_sha256"]) == 64
    )


def test_batched_and_one_by_one_recognition_agree(ocr_engine: OCREngine, tmp_path: Path) -> None:
    truth = generate(str(tmp_path), count=2, seed=8)
    images = [decode_image((tmp_path / t["image"]).read_bytes()) for t in truth]
    crops = [c for img in images for c in ocr_engine.crop(img, ocr_engine.detect(img))]
    batched = [r.text for r in ocr_engine.recognize(crops)]
    single = [ocr_engine.recognize([c])[0].text for c in crops]
    assert len(crops) > 5
    assert sum(a == b for a, b in zip(batched, single, strict=True)) >= 0.95 * len(crops)


def test_fixed_shape_batches_read_the_same(ocr_engine: OCREngine, tmp_path: Path) -> None:
    """The GPU mode (every batch padded to batch_size rows) must not change what is read."""
    from wildocr.engine.recognition import RecognizerConfig, TextRecognizer

    truth = generate(str(tmp_path), count=1, seed=9)
    image = decode_image((tmp_path / truth[0]["image"]).read_bytes())
    crops = ocr_engine.crop(image, ocr_engine.detect(image))
    session, charset = ocr_engine.recognizer.session, ocr_engine.recognizer.charset
    fixed = TextRecognizer(session, charset, RecognizerConfig(batch_size=8, fixed_batch=True))
    assert fixed.fixed_batch
    assert [r.text for r in fixed(crops)] == [r.text for r in ocr_engine.recognizer(crops)]


# The settings before #15, as (EngineConfig options, SessionOptions fields): two images detected at once,
# recognition batches capped by row count only, ONNX Runtime's CPU arena off and idle threads spinning.
BEFORE = ({"detect_workers": 0, "rec_max_batch_width": 0}, {"cpu_arena": False, "spinning": True})


def _engine(options: dict, session: dict | None = None) -> OCREngine:
    config = EngineConfig(device="cpu").with_options(**options)
    return OCREngine(config, session_options=SessionOptions(**(session or {})))


def _words(engine: OCREngine, folder: Path, truth: list[dict]) -> list[list[tuple[str, tuple]]]:
    images = [decode_image((folder / line["image"]).read_bytes()) for line in truth]
    return [
        [(w.text, tuple(round(c) for point in w.poly for c in point)) for w in result.words]
        for result in engine.read(images)
    ]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("photos")
    return folder, generate(str(folder), count=6, seed=5)


@pytest.mark.slow  # loads the models once per setting: 28 s measured with the suite on 2 shared cores
def test_memory_and_concurrency_settings_do_not_change_the_words(photos, ocr_engine) -> None:
    folder, truth = photos
    default = _words(ocr_engine, folder, truth)
    assert sum(len(words) for words in default) > 20
    variants = (
        BEFORE,
        ({"detect_workers": 0}, {}),
        ({}, {"shared_arena": False}),
        ({"rec_max_batch_width": 0}, {}),
    )
    for options, session in variants:
        assert _words(_engine(options, session), folder, truth) == default, (options, session)


_PEAK = """
import json, sys
from pathlib import Path
from wildocr.engine import EngineConfig, OCREngine, decode_image
from wildocr.engine.backends import SessionOptions
folder, (options, session) = Path(sys.argv[1]), json.loads(sys.argv[2])
config = EngineConfig(device="cpu").with_options(**options)
engine = OCREngine(config, session_options=SessionOptions(**session))
paths = sorted(folder.glob("*.jpg"))
for start in range(0, len(paths), 8):  # the chunk size wildocr ocr and the shard tasks use
    engine.read([decode_image(p.read_bytes()) for p in paths[start : start + 8]])
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"peak_mb": hwm / 1024}))
"""


def _peak_mb(folder: Path, options: tuple[dict, dict]) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PEAK), str(folder), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.slow  # two subprocesses that load the models and read photos: 42 s on 2 shared cores
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_reading_photos_holds_about_half_the_memory_it_used_to(tmp_path: Path) -> None:
    """The #15 goal (<= 600 MB over 60 photos) measured the way bench/throughput.py does, on 16 photos."""
    generate(str(tmp_path), count=16, seed=9)
    now, before = _peak_mb(tmp_path, ({}, {})), _peak_mb(tmp_path, BEFORE)
    assert now <= 600, (now, before)
    assert now <= 0.75 * before, (now, before)


def test_lazy_engine_loads_only_the_models_a_stage_runs(photos, ocr_engine) -> None:
    folder, truth = photos
    engine = OCREngine(EngineConfig(device="cpu"), lazy=True)
    loaded = lambda: (engine._detector is not None, engine._recognizer is not None, engine._classifier_loaded)  # noqa: E731
    info = engine.model_info  # hashes of the files: no session needed, and no int8 detector built
    assert info["rec_model"] and len(info["rec_sha256"]) == 64
    assert "det_sha256" not in info and "det_model" not in info  # not resolved yet
    assert loaded() == (False, False, False)
    image = decode_image((folder / truth[0]["image"]).read_bytes())
    eager = ocr_engine
    detections = eager.detect(image)
    crops = engine.crop(image, detections)  # the crop task
    assert len(crops) == len(detections) > 0
    assert loaded() == (False, False, False)
    assert engine.recognize(crops) == eager.recognize(crops)  # the recognize task
    assert loaded() == (False, True, True)
    assert engine.detect(image) == detections
    assert loaded() == (True, True, True)
    assert engine.model_info == eager.model_info
    assert len(engine.model_info["det_sha256"]) == 64 and engine.model_info["det_model"].endswith("(int8)")
    assert {k: v for k, v in engine.model_info.items() if not k.startswith("det_")} == info
    staged = OCREngine(EngineConfig(device="cpu"), lazy=True).load("detect")  # what the detect task does
    assert (staged._detector is not None, staged._recognizer is None) == (True, True)
    assert staged.model_info == eager.model_info
    with pytest.raises(ValueError, match="stage must be"):
        staged.load("crop")


def _read_words(engine: OCREngine, photos) -> list[list[tuple[str, float, tuple]]]:
    """Text, detection score and box of every word of the first two photos."""
    folder, truth = photos
    images = [decode_image((folder / line["image"]).read_bytes()) for line in truth[:2]]
    return [[(w.text, w.det_score, tuple(map(tuple, w.poly))) for w in r.words] for r in engine.read(images)]


def test_a_model_folder_identical_to_stock_reads_the_same_words(photos, tmp_path: Path) -> None:
    """Byte copies of the stock detector and recognizer in a folder: the same words, and the rows name the
    folder's files (fp32 detector: an int8 build of the copy would cost 15 s and give the same file)."""
    from tests.helpers import model_folder
    from wildocr.engine import models

    config = EngineConfig(device="cpu").with_options(det_precision="fp32")
    stock = OCREngine(config)
    folder = OCREngine(replace(config, model_dir=str(model_folder(tmp_path / "copy", det=True, rec=True))))
    assert _read_words(folder, photos) == _read_words(stock, photos)
    assert folder.model_info == {
        **stock.model_info,
        "det_model": "copy/det.onnx",
        "rec_model": "copy/rec.onnx",
    }
    assert folder.model_info["det_sha256"] == models.file_sha256(models.model_path(models.DET_MODEL))


def test_a_model_folder_detector_is_the_one_that_runs(photos, tmp_path: Path) -> None:
    """A detector with other weights (its last bias lowered) gives other boxes and lower scores, and its
    own hash in the rows, int8 included: the int8 file is built from the folder's detector."""
    from tests.helpers import model_folder
    from wildocr.engine import quantize

    stock = OCREngine(EngineConfig(device="cpu").with_options(det_precision="fp32"))
    lowered = model_folder(tmp_path / "lowered", det_bias_shift=-2.0)
    tuned = OCREngine(replace(stock.config, model_dir=str(lowered)))
    before, after = _read_words(stock, photos), _read_words(tuned, photos)
    assert after != before
    assert np.mean([s for r in after for _, s, _ in r]) < np.mean([s for r in before for _, s, _ in r]) - 0.01
    assert tuned.model_info["det_model"] == "lowered/det.onnx"
    assert tuned.model_info["det_sha256"] != stock.model_info["det_sha256"]
    assert tuned.model_info["rec_model"] == stock.model_info["rec_model"]  # no rec in the folder: stock
    assert quantize.int8_path(lowered / "det.onnx") != quantize.int8_path(stock._det_path)


def test_a_detector_session_given_to_the_engine_is_the_one_that_runs(photos, tmp_path: Path) -> None:
    """Training reads its held-out photos through a session of weights it has not written yet: the
    engine detects with that session as it would with the same weights in a model folder."""
    from tests.helpers import model_folder
    from wildocr.engine import backends

    lowered = model_folder(tmp_path / "lowered", det_bias_shift=-2.0)
    config = EngineConfig(device="cpu").with_options(det_precision="fp32")
    from_folder = OCREngine(replace(config, model_dir=str(lowered)))
    session = backends.create_session((lowered / "det.onnx").read_bytes(), SessionOptions())
    given = OCREngine(config, detector_session=session)
    assert _read_words(given, photos) == _read_words(from_folder, photos)
    assert _read_words(given, photos) != _read_words(OCREngine(config), photos)
    assert "det_sha256" not in given.model_info  # no file runs: the rows could not name one


def test_a_model_folder_is_read_at_its_detectors_own_input_size(tmp_path: Path) -> None:
    """A detector trained at 640 px (`models.det.limit_side`) is read at 640 px; the stock weights at 736;
    `det_limit_side` set by the user wins over both."""
    from tests.helpers import model_folder

    config = EngineConfig(device="cpu").with_options(det_precision="fp32")
    folder = str(model_folder(tmp_path / "small", det_limit_side=640))
    photo = np.zeros((720, 1280, 3), np.uint8)
    stock, own = OCREngine(config), OCREngine(replace(config, model_dir=folder))
    chosen = OCREngine(replace(config, model_dir=folder).with_options(det_limit_side=800))
    assert stock.detector.probability_map(photo).shape == (736, 1312)
    assert own.detector.probability_map(photo).shape == (640, 1152)
    assert chosen.detector.probability_map(photo).shape == (800, 1408)
    assert own.config.detector.limit_side == 640
    # ... and what the rows say: the hashes are the same, so the options must tell the runs apart
    given = {"det_precision": "fp32", "device": "cpu"}
    assert json.loads(stock.model_info["engine_options"]) == {**given, "det_limit_side": 736}
    assert json.loads(own.model_info["engine_options"]) == {**given, "det_limit_side": 640}
    assert json.loads(chosen.model_info["engine_options"]) == {**given, "det_limit_side": 800}
    with pytest.raises(ValueError, match="det_limit_side must be 0"):
        OCREngine(config.with_options(det_limit_side=-1), lazy=True)


def test_engine_options_in_the_rows_are_the_changed_ones_as_canonical_json() -> None:
    """Defaults stay out (a row of a default run names only the resolved input size), given options are
    in whatever order they were given, tuples as JSON lists; every flat option round-trips."""
    first = EngineConfig().with_options(verify_words=False, rec_width_buckets=(160, 320), det_thresh=0.25)
    second = EngineConfig().with_options(det_thresh=0.25, verify_words=False, rec_width_buckets=[160, 320])
    text = OCREngine(first, lazy=True).options_json()
    assert text == OCREngine(second, lazy=True).options_json()
    expected = '{"det_limit_side":736,"det_thresh":0.25,"rec_width_buckets":[160,320],"verify_words":false}'
    assert text == expected
    assert OCREngine(lazy=True).options_json() == '{"det_limit_side":736}'
    assert EngineConfig().with_options(**first.flat()) == first


class _Counting:
    """A real session that counts its calls (which of the detector's two sessions ran)."""

    def __init__(self, session) -> None:
        self.session, self.calls = session, 0

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, output_names, feeds):
        self.calls += 1
        return self.session.run(output_names, feeds)


def test_detection_runs_on_both_threads_alone_and_on_one_beside_recognition(tmp_path: Path) -> None:
    """On CPU the detector has a one-thread session for when recognition holds the other slot, and a
    session on all the engine's threads for when it runs alone; both find the same boxes."""
    engine = OCREngine(EngineConfig(device="cpu", workers=2, threads=1))
    slotted = engine.detector.session
    narrow, wide = _Counting(slotted.session), _Counting(slotted._alone)
    assert narrow.session.get_session_options().intra_op_num_threads == 1
    assert wide.session.get_session_options().intra_op_num_threads == 2
    slotted.session, slotted._alone = narrow, wide
    truth = generate(str(tmp_path), count=1, seed=9)
    image = decode_image((tmp_path / truth[0]["image"]).read_bytes())
    alone = engine.detect(image)
    assert (wide.calls, narrow.calls) == (1, 0)
    with slotted._slots:  # a recognition batch holds the other slot
        beside = engine.detect(image)
    assert (wide.calls, narrow.calls) == (1, 1)
    assert [d.quad for d in beside] == [d.quad for d in alone] and len(alone) > 0


def test_network_calls_share_the_engines_worker_slots(tmp_path: Path) -> None:
    """Detection and recognition batches take one of `workers` slots while their network runs, so a
    detection beside a recognition chunk (pipeline/outcome.py) adds one batch's activations, not `workers`
    of them; a call waits while every slot is taken and goes on when one frees."""
    import threading

    engine = OCREngine(EngineConfig(workers=2, threads=1))
    slots = engine.detector.session._slots
    assert engine.recognizer.session._slots is slots
    truth = generate(str(tmp_path), count=1, seed=9)
    image = decode_image((tmp_path / truth[0]["image"]).read_bytes())
    expected = engine.detect(image)
    for _ in range(2):
        slots.acquire()
    done = threading.Event()
    found: list = []
    worker = threading.Thread(target=lambda: (found.extend(engine.detect(image)), done.set()))
    worker.start()
    try:
        assert not done.wait(timeout=1.0)  # every slot taken: the detector waits
    finally:
        slots.release()
    assert done.wait(timeout=120) and found == expected
    slots.release()
    worker.join()
