"""Memory and concurrency settings of the engine (issue #15): they change how much memory a process holds,
never the words read, and a staged task loads only the models its stage runs.

Peak RSS is read from the kernel (VmHWM of a fresh process), on real models and generated 1280x720 photos.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from include.sample_data import generate
from wildocr.engine import EngineConfig, OCREngine, decode_image
from wildocr.engine.backends import SessionOptions

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


def test_memory_and_concurrency_settings_do_not_change_the_words(photos) -> None:
    folder, truth = photos
    default = _words(OCREngine(EngineConfig(device="cpu")), folder, truth)
    assert sum(len(words) for words in default) > 20
    variants = (
        BEFORE,
        ({"detect_workers": 0}, {}),
        ({}, {"shared_arena": False}),
        ({"rec_max_batch_width": 0}, {}),
    )
    for options, session in variants:
        assert _words(_engine(options, session), folder, truth) == default, (options, session)


def test_wide_recognition_buckets_get_fewer_rows() -> None:
    from wildocr.engine.recognition import RecognizerConfig, plan_batches

    shapes = [(48, 100)] * 40 + [(48, 1200)] * 5
    cfg = RecognizerConfig(batch_size=32, width_buckets=(160, 1280), max_batch_width=2560)
    sizes = {
        bucket: max(len(m) for b, m in plan_batches(shapes, cfg) if b == bucket) for bucket in (160, 1280)
    }
    assert sizes == {160: 16, 1280: 2}  # 2560 columns: 16 rows of 160, 2 of 1280
    uncapped = plan_batches(
        shapes, RecognizerConfig(batch_size=32, width_buckets=(160, 1280), max_batch_width=0)
    )
    assert [len(m) for _, m in uncapped] == [32, 8, 5]


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


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_reading_photos_holds_about_half_the_memory_it_used_to(tmp_path: Path) -> None:
    """The #15 goal (<= 600 MB over 60 photos) measured the way bench/throughput.py does, on 16 photos."""
    generate(str(tmp_path), count=16, seed=9)
    now, before = _peak_mb(tmp_path, ({}, {})), _peak_mb(tmp_path, BEFORE)
    assert now <= 600, (now, before)
    assert now <= 0.75 * before, (now, before)


def test_lazy_engine_loads_only_the_models_a_stage_runs(photos) -> None:
    folder, truth = photos
    engine = OCREngine(EngineConfig(device="cpu"), lazy=True)
    loaded = lambda: (engine._detector is not None, engine._recognizer is not None, engine._classifier_loaded)  # noqa: E731
    info = engine.model_info  # hashes of the files: no session needed, and no int8 detector built
    assert info["rec_model"] and len(info["rec_sha256"]) == 64
    assert "det_sha256" not in info and "det_model" not in info  # not resolved yet
    assert loaded() == (False, False, False)
    image = decode_image((folder / truth[0]["image"]).read_bytes())
    eager = OCREngine(EngineConfig(device="cpu"))
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
