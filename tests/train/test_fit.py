"""wildocr.train.fit: a few steps on generated photos; the loss falls and a checked model folder comes out."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (PyTorch) is not installed")
import onnxruntime as ort  # noqa: E402

from wildocr.engine.crop import crop_quad  # noqa: E402
from wildocr.engine.models import (  # noqa: E402
    DET_MODEL,
    REC_MODEL,
    load_model_folder,
    model_path,
    recognizer_charset,
)
from wildocr.samples import generate, render_sample  # noqa: E402
from wildocr.train import rec  # noqa: E402
from wildocr.train.data import TrainDataError, load_dataset  # noqa: E402
from wildocr.train.fit import TrainSettings, train  # noqa: E402
from wildocr.train.folder import FORMAT  # noqa: E402


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_folder(folder: Path) -> dict:
    """The agreed manifest: the engine's own check passes (format, files, SHA-256, graphs, charset), and
    each role names its base with the base file's hash."""
    checked = load_model_folder(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert checked.manifest == manifest
    assert manifest["format"] == FORMAT
    for role, entry in manifest["models"].items():
        assert _sha(folder / entry["file"]) == entry["sha256"]
        stock = model_path(DET_MODEL if role == "det" else REC_MODEL)
        assert entry["base"] == {"file": stock.name, "sha256": _sha(stock)}
    assert manifest["training"]["seconds"] > 0 and manifest["training"]["device"] == "cpu"
    return manifest


def test_blend_moves_the_trained_weights_back_towards_the_base() -> None:
    from wildocr.train.fit import blend
    from wildocr.train.graph import load

    module, _ = load(str(model_path(DET_MODEL)))
    base = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(1.0)  # "trained": every weight 1 above the base
    blend(module, base, 0.25)
    params = {name for name, _ in module.named_parameters()}
    assert params
    for key, value in module.state_dict().items():
        expected = base[key] + 0.75 if key in params else base[key]
        assert torch.allclose(value, expected, atol=1e-6), key


def _scripted_fit(
    criterion: str, scores: list[dict[str, float]], module: torch.nn.Module | None = None, ema: float = 0.0
) -> dict:
    """`fit` on a one-weight module whose validation returns `scores` in turn (the base first), two steps
    an epoch."""
    from wildocr.train.fit import fit

    module = module or torch.nn.Linear(1, 1)
    calls = iter(scores)

    def step_loss(batch: tuple) -> torch.Tensor:
        return ((module(batch[0]) - 3.0) ** 2).mean()

    settings = TrainSettings(epochs=len(scores) - 1, patience=9, lr=0.1, select_by=criterion, ema=ema)
    batches = [(torch.ones(2, 1),), (torch.full((2, 1), 2.0),)]
    return fit(module, lambda epoch: batches, lambda: next(calls), step_loss, settings, torch.device("cpu"))  # type: ignore[arg-type]


def test_a_moving_average_of_the_weights_is_what_is_kept() -> None:
    """With `ema`, the folder holds the average that was validated: replaying the same steps by hand and
    averaging their weights gives the kept module's weights; without it, the last step's."""
    torch.manual_seed(3)
    start = torch.nn.Linear(1, 1)
    rising = [{"loss": 1.0, "hmean": 0.1 * i} for i in range(4)]  # every epoch better: the last is kept
    replay = copy.deepcopy(start)
    optimizer = torch.optim.AdamW(replay.parameters(), lr=0.1, weight_decay=1e-4)
    average = {k: v.clone() for k, v in replay.state_dict().items()}
    for _ in range(3):
        for x in (torch.ones(2, 1), torch.full((2, 1), 2.0)):
            optimizer.zero_grad()
            ((replay(x) - 3.0) ** 2).mean().backward()
            torch.nn.utils.clip_grad_norm_(replay.parameters(), 5.0)
            optimizer.step()
            for key, value in replay.state_dict().items():
                average[key] = 0.6 * average[key] + 0.4 * value.detach()
    kept = copy.deepcopy(start)
    assert _scripted_fit("hmean", rising, kept, ema=0.6)["best_epoch"] == 3
    for key, value in kept.state_dict().items():
        assert torch.allclose(value, average[key], atol=1e-5), key
        assert not torch.allclose(value, replay.state_dict()[key], atol=1e-3)  # not the last step's
    plain = copy.deepcopy(start)
    _scripted_fit("hmean", rising, plain)
    for key, value in plain.state_dict().items():
        assert torch.allclose(value, replay.state_dict()[key], atol=1e-5), key


def test_the_kept_epoch_is_the_best_by_the_chosen_score() -> None:
    """The map loss falls every epoch while the photos read best after epoch 1: each criterion keeps its
    own best epoch (loss lower, hmean higher), and a later tie does not replace an earlier best."""
    scores = [
        {"loss": 0.60, "hmean": 0.70},
        {"loss": 0.55, "hmean": 0.74},
        {"loss": 0.52, "hmean": 0.72},
        {"loss": 0.50, "hmean": 0.74},
    ]
    assert _scripted_fit("hmean", scores)["best_epoch"] == 1
    assert _scripted_fit("loss", scores)["best_epoch"] == 3
    worse = [{"loss": 0.60, "hmean": 0.70}, {"loss": 0.50, "hmean": 0.69}]
    assert not _scripted_fit("hmean", worse)["improved"]


def test_selection_scores_are_checked_per_role() -> None:
    assert TrainSettings().resolved("det").select_by == "hmean"
    assert TrainSettings().resolved("rec").select_by == "loss"
    assert TrainSettings(select_by="loss").resolved("det").select_by == "loss"
    with pytest.raises(ValueError, match="rec: --select-by must be auto or one of loss, word_accuracy"):
        TrainSettings(select_by="hmean").resolved("rec")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    generate(str(root), count=2, seed=5)
    return root / "ground_truth.jsonl"


@pytest.fixture(scope="module")
def det_folder(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("models") / "det-tuned"
    settings = TrainSettings(epochs=1, max_steps=4, batch_size=2, crop=128, lr=1e-4, device="cpu")
    return out, train("det", [photos], out, settings, val=[photos])


@pytest.mark.slow
def test_detector_folder_validates(det_folder: tuple[Path, dict]) -> None:
    """(That the loss falls is tests/train/test_det.py's, on fixed windows; here the windows differ.)"""
    out, result = det_folder
    assert result["steps"] == 1 and len(result["history"]) == 1  # 2 photos, batch 2: one step an epoch
    manifest = _check_folder(out)
    assert set(manifest["models"]) == {"det"}
    validation = manifest["metrics"]["det_validation"]
    assert validation["base"] == result["base"] and validation["improved"] == result["improved"]
    # Kept by the held-out photos read whole (the default), with the map loss recorded beside it.
    assert result["selected_by"] == validation["selected_by"] == "hmean"
    for scores in (result["base"], *result["history"]):
        assert {"loss", "hmean", "det_hmean", "e2e_hmean", "det_recall", "e2e_precision"} <= set(scores)
    assert result["base"]["det_recall"] > 0.5  # the stock weights read the generated photos
    assert manifest["training"]["data"][0]["kind"] == "jsonl"
    assert manifest["models"]["det"]["limit_side"] == 736  # trained at the stock detector's own size
    # Same graph as the stock file: ONNX Runtime runs it with the stock input/output names.
    session = ort.InferenceSession(str(out / "det.onnx"), providers=["CPUExecutionProvider"])
    stock = ort.InferenceSession(str(model_path(DET_MODEL)), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i.name for i in stock.get_inputs()]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    assert session.run(None, {"x": x})[0].shape == stock.run(None, {"x": x})[0].shape


def _word_crops(root: Path) -> Path:
    """Crops of generated words, labelled in LOWER case (the model reads the upper-case ink), so the base
    weights have something to learn; one label outside the charset, to be skipped."""
    (root / "crops").mkdir(parents=True)
    sample = render_sample(7, 0)
    lines = []
    for i, word in enumerate(sample.words[:8]):
        crop = crop_quad(sample.rgb[:, :, ::-1], np.asarray(word["poly"], np.float32))
        cv2.imwrite(str(root / "crops" / f"{i}.png"), crop)
        lines.append(f"{i}.png\t{word['text'].lower()}")
    lines.append("0.png\t\u05d0")  # Hebrew alef: not in the recognizer's charset
    (root / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_recognizer_loss_falls_and_base_folder_keeps_its_detector(
    tmp_path: Path, det_folder: tuple[Path, dict]
) -> None:
    crops = _word_crops(tmp_path / "words")
    out = tmp_path / "both"
    settings = TrainSettings(epochs=1, max_steps=3, batch_size=8, lr=1e-4, device="cpu")
    result = train("rec", [crops], out, settings, val=[crops], base=det_folder[0])
    assert result["labels_skipped"] == 2  # once as training data, once as validation data
    assert result["history"][0]["loss"] < result["base"]["loss"]
    manifest = _check_folder(out)
    assert set(manifest["models"]) == {"det", "rec"}
    assert manifest["models"]["det"]["sha256"] == _sha(det_folder[0] / "det.onnx")
    assert manifest["models"]["det"]["limit_side"] == 736  # the detector's entry travels whole
    assert set(manifest["training"]["settings"]) == {"det", "rec"}
    assert recognizer_charset(out / "rec.onnx") == recognizer_charset(model_path(REC_MODEL))


def test_blended_detector_folder_records_the_blend(photos: Path, tmp_path: Path) -> None:
    settings = TrainSettings(
        epochs=1, max_steps=4, batch_size=2, crop=128, lr=1e-4, device="cpu", blend_base=0.5
    )
    result = train("det", [photos], tmp_path / "blended", settings, val=[photos])
    manifest = _check_folder(tmp_path / "blended")
    assert result["improved"] and manifest["training"]["settings"]["det"]["blend_base"] == 0.5
    blended = manifest["metrics"]["det_validation"]["blended"]
    assert blended == result["blended"] and blended["loss"] < result["base"]["loss"]
    with pytest.raises(ValueError, match="blend_base must be at least 0 and below 1"):
        train("det", [photos], tmp_path / "no", TrainSettings(blend_base=1.0), val=[photos])
    with pytest.raises(ValueError, match="ema must be at least 0"):
        train("det", [photos], tmp_path / "no", TrainSettings(ema=1.0), val=[photos])
    assert not (tmp_path / "no").exists()


@pytest.mark.slow
def test_a_detector_trained_at_another_input_size_is_read_at_it(photos: Path, tmp_path: Path) -> None:
    """`--limit-side`: trained and validated at that size, named in the folder, read at it by the engine;
    a folder trained on from it keeps it unless told otherwise."""
    from dataclasses import replace

    from wildocr.engine import EngineConfig, OCREngine

    settings = TrainSettings(epochs=1, max_steps=1, batch_size=2, crop=128, lr=1e-4, device="cpu")
    small = tmp_path / "small"
    result = train("det", [photos], small, replace(settings, limit_side=512), val=[photos])
    assert _check_folder(small)["models"]["det"]["limit_side"] == 512
    assert result["base"]["det_recall"] > 0.5  # the held-out photos were read (at 512 px)
    engine = OCREngine(replace(EngineConfig().with_options(det_precision="fp32"), model_dir=str(small)))
    assert engine.detector.probability_map(np.zeros((720, 1280, 3), np.uint8)).shape == (512, 896)
    train("det", [photos], tmp_path / "again", settings, val=[photos], base=small)
    assert load_model_folder(tmp_path / "again").det_limit_side == 512
    with pytest.raises(ValueError, match=r"--limit-side\) is the detector's input size"):
        train("rec", [photos], tmp_path / "no", replace(settings, limit_side=512), val=[photos])
    with pytest.raises(ValueError, match="from 32 to 4096 px"):
        train("det", [photos], tmp_path / "no", replace(settings, limit_side=16), val=[photos])
    assert not (tmp_path / "no").exists()


def test_photos_without_a_readable_word_cannot_pick_the_epoch(photos: Path, tmp_path: Path) -> None:
    """Held-out photos whose words are all `###` give every epoch hmean 0: a clear error, not a folder
    that silently keeps the base weights."""
    lines = [json.loads(line) for line in photos.read_text().splitlines()]
    for line in lines:
        line["image"] = str(photos.parent / line["image"])
        line["words"] = [{**word, "text": "###"} for word in line["words"]]
    unreadable = tmp_path / "unreadable.jsonl"
    unreadable.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(TrainDataError, match=r"no readable word to score .*--select-by loss"):
        train("det", [photos], tmp_path / "out", TrainSettings(device="cpu"), val=[unreadable])
    assert not (tmp_path / "out").exists()


def test_word_crops_cannot_train_the_detector(tmp_path: Path) -> None:
    crops = _word_crops(tmp_path / "words")
    with pytest.raises(TrainDataError, match="word crops train the recognizer only"):
        train("det", [crops], tmp_path / "out", TrainSettings(device="cpu"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_engine_reads_with_the_fine_tuned_detector(det_folder: tuple[Path, dict]) -> None:
    """The folder is one the engine loads (`model_dir`, as `--model-dir` gives it) and reads with."""
    from dataclasses import replace

    from wildocr.engine import EngineConfig, OCREngine

    config = replace(EngineConfig().with_options(det_precision="fp32"), model_dir=str(det_folder[0]))
    engine = OCREngine(config)
    photo = render_sample(1, 0)
    result = engine.read([photo.rgb[:, :, ::-1].copy()])[0]
    expected = {w["text"] for w in photo.words}
    assert {w.text for w in result.words} & expected  # a few steps on two photos: it still reads


@pytest.mark.slow
def test_recognizer_validation_holds_out_whole_photos(tmp_path: Path, photos: Path) -> None:
    charset = rec.Charset(recognizer_charset(model_path(REC_MODEL)))
    per_photo = [len(rec.examples([p], [], charset)[0]) for p in load_dataset(photos).photos]
    assert len(per_photo) == 2 and per_photo[0] != per_photo[1]  # else a word split could look the same
    settings = TrainSettings(epochs=1, max_steps=1, batch_size=8, val_fraction=0.5, device="cpu")
    result = train("rec", [photos], tmp_path / "rec", settings)
    assert result["val_items"] in per_photo
    assert result["train_items"] + result["val_items"] == sum(per_photo)
