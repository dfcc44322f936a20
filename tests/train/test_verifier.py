"""wildocr.train.verifier: words labelled as ICDAR scores them, the fit, and a verifier in a model folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("shapely", reason="the 'train' extra (shapely) is not installed")

from tests.helpers import axis_box
from wildocr.engine import EngineConfig, ModelFileError, OCREngine
from wildocr.engine.models import REC_MODEL, load_model_folder, model_path
from wildocr.engine.types import Word
from wildocr.engine.verify import FEATURES, STOCK_VERIFIER, LogisticModel, Verifier
from wildocr.samples import generate, render_sample
from wildocr.storage import tables
from wildocr.train.data import WordBox
from wildocr.train.folder import FORMAT, add_verifier, sha256, write_model_folder
from wildocr.train.verifier import fit_logistic, label, train_verifier


def _word(text: str, quad: np.ndarray) -> Word:
    xs, ys = quad[:, 0], quad[:, 1]
    poly = tuple((float(x), float(y)) for x, y in quad)
    return Word(text, 0.9, 0.8, 0, poly, (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())))  # type: ignore[arg-type]


def test_words_are_labelled_as_icdar_scores_them() -> None:
    annotated = [WordBox(axis_box(0, 0, 100, 30), "Exit"), WordBox(axis_box(200, 0, 100, 30), "###")]
    words = [
        _word('"EXIT."', axis_box(2, 1, 98, 29)),  # the same box and text (case, outer punctuation aside)
        _word("Exlt", axis_box(0, 0, 100, 30)),  # the same box, misread
        _word("Exit", axis_box(0, 0, 40, 30)),  # a fragment: IoU 0.4
        _word("door", axis_box(0, 100, 100, 30)),  # on nothing annotated
        _word("anything", axis_box(205, 2, 90, 26)),  # over an unreadable region: not scored
    ]
    assert label(words, annotated) == [(1, 1), (1, 0), (0, 0), (0, 0), None]


def test_fit_recovers_a_known_model_and_survives_one_class() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0)))).astype(float)
    model = fit_logistic(x, y)
    assert abs(model.weights[0] - 2.0) < 0.25 and abs(model.weights[1]) < 0.15 and abs(model.bias + 1.0) < 0.2
    one_class = fit_logistic(x, np.ones(4000))
    assert all(np.isfinite([*one_class.weights, one_class.bias])) and one_class.probability(x[0]) > 0.5


@pytest.fixture
def stock_folder(tmp_path: Path) -> Path:
    """A model folder holding no weights of its own: it reads as the stock engine does."""
    folder = tmp_path / "stock"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": FORMAT, "name": "stock", "models": {}}))
    return folder


def _refusing_verifier() -> Verifier:
    never = LogisticModel(weights=(0.0,) * len(FEATURES), bias=-30.0)
    return Verifier(text=never, reading=never)


@pytest.mark.slow
def test_fitted_verifier_goes_into_the_folder_and_the_engine_uses_it(
    stock_folder: Path, tmp_path: Path
) -> None:
    generate(str(tmp_path / "photos"), count=12, seed=3)
    result = train_verifier([tmp_path / "photos" / "ground_truth.jsonl"], stock_folder)
    manifest = json.loads((stock_folder / "manifest.json").read_text())
    entry = manifest["verifier"]
    assert entry["file"] == "verifier.json" and entry["sha256"] == sha256(stock_folder / "verifier.json")
    assert entry["fitted_on"]["photos"] == 12 and entry["fitted_on"]["labelled"] == result["labelled"] >= 100
    assert 0.5 < entry["fitted_on"]["text_share"] <= 1.0  # generated photos: nearly every box is a word
    loaded = load_model_folder(stock_folder).verifier
    assert loaded is not None and loaded != STOCK_VERIFIER
    engine = OCREngine(EngineConfig(model_dir=str(stock_folder)))
    assert engine.verifier == loaded
    photo = render_sample(4, 0).rgb[:, :, ::-1].copy()
    assert {w.text for w in engine.read([photo])[0].words} & {w["text"] for w in render_sample(4, 0).words}
    # The engine judges words with the folder's verifier: one that refuses everything keeps nothing.
    add_verifier(stock_folder, _refusing_verifier(), {"note": "refuses every word"})
    assert OCREngine(EngineConfig(model_dir=str(stock_folder))).read([photo])[0].words == []


def test_the_rows_name_the_verifier_that_kept_the_words(stock_folder: Path) -> None:
    """`verifier_sha256` in every images row: the folder's verifier.json as its manifest names it, the stock
    verifier's own hash without one, empty (null in the tables) when the verifier is off."""
    add_verifier(stock_folder, _refusing_verifier(), {"note": "refuses every word"})
    named = json.loads((stock_folder / "manifest.json").read_text())["verifier"]["sha256"]
    folder_info = OCREngine(EngineConfig(model_dir=str(stock_folder)), lazy=True).model_info
    stock_info = OCREngine(EngineConfig(), lazy=True).model_info
    assert folder_info["verifier_sha256"] == named == sha256(stock_folder / "verifier.json")
    assert stock_info["verifier_sha256"] == STOCK_VERIFIER.sha256() != named
    off = OCREngine(EngineConfig().with_options(verify_words=False), lazy=True).model_info
    assert off["verifier_sha256"] == ""
    row = tables.image_row(
        image_uri="file:///a.jpg",
        etag="e",
        size=1,
        run_id="r",
        shard=0,
        processed_at=tables.utc_now(),
        model_info=folder_info,
    )
    assert row["verifier_sha256"] == named


def test_broken_verifier_is_refused_naming_the_file(stock_folder: Path) -> None:
    add_verifier(stock_folder, STOCK_VERIFIER, {})
    assert load_model_folder(stock_folder).verifier == STOCK_VERIFIER
    file = stock_folder / "verifier.json"
    body = json.loads(file.read_text())
    body["features"] = body["features"][::-1]
    file.write_text(json.dumps(body))
    with pytest.raises(ModelFileError, match=r"verifier\.json has SHA-256"):
        load_model_folder(stock_folder)
    manifest = json.loads((stock_folder / "manifest.json").read_text())
    manifest["verifier"]["sha256"] = sha256(file)
    (stock_folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"verifier\.json: the verifier's 'features' must be"):
        load_model_folder(stock_folder)
    body["features"], body["text"]["bias"] = list(FEATURES), "high"
    file.write_text(json.dumps(body))
    manifest["verifier"]["sha256"] = sha256(file)
    (stock_folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="text: weights and bias must be finite numbers"):
        load_model_folder(stock_folder)
    file.unlink()
    with pytest.raises(ModelFileError, match=r"verifier\.file 'verifier\.json' is missing"):
        load_model_folder(stock_folder)


def test_training_a_model_drops_the_verifier_fitted_to_the_old_one(stock_folder: Path) -> None:
    add_verifier(stock_folder, STOCK_VERIFIER, {})
    stock_rec = model_path(REC_MODEL)
    training = {"data": [], "settings": {}, "seconds": 1.0, "device": "cpu"}
    write_model_folder(
        stock_folder,
        "rec",
        stock_rec.read_bytes(),
        stock_rec,
        name="stock",
        training=training,
        metrics={},
        base_folder=stock_folder,
    )
    folder = load_model_folder(stock_folder)
    assert folder.verifier is None and "verifier" not in folder.manifest and folder.rec is not None
    assert not (stock_folder / "verifier.json").exists()
