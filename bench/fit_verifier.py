"""Refit the word verifier (src/wildocr/engine/verify.py) on the TUNE half of ICDAR 2015 train.

    python bench/fit_verifier.py [--data ../shared/ic15-train] [--limit N] [--score]
                                 [--model-dir DIR] [--check]

Reads img_1-img_500 with the engine (models, crops and word splitting as in production), keeps every
candidate word above the confidence floor (`min_confidence`), labels it against the ground truth (IoU
> 0.5 with an annotated word = text; and the same text, case and outer punctuation aside = read right;
words lying over a don't-care region are left out), fits the two logistic models and prints them in the
form verify.py holds (another set with ICDAR-style ground truth, photos not named img_N: all of its
photos). The check half (img_501-img_1000) is not used for fitting: it is what
`bench/accuracy.py --split check` scores the result on. `--score` also prints the tune half's
detection / end-to-end scores with the refitted models at the engine's default thresholds; `--check`
reads the check half too and prints its scores with the shipped models and with the refitted ones, side
by side. `--model-dir` reads with a fine-tuned model folder (does a verifier refitted to its readings
gain?).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    clean_text,
    decode_file,
    eval_script,
    gt_path,
    image_number,
    list_images,
    load_icdar_gt,
    polygon,
    polygon_iou,
    run_eval,
    shared_dir,
)

from wildocr.engine import EngineConfig, OCREngine
from wildocr.engine.types import Word
from wildocr.engine.verify import FEATURES, READING_MODEL, TEXT_MODEL, LogisticModel

TUNE = range(1, 501)
L2 = 1.0  # ridge on standardised features: the two models have 9 weights for ~2,500 labelled words


def label(words, gt_file: Path) -> list[tuple[int, int] | None]:
    """(is text, read right) per word; None for a word over a don't-care region (not scored)."""
    gts = load_icdar_gt(gt_file)
    care = [(polygon(g.quad.tolist()), g.text) for g in gts if not g.dont_care]
    dont_care = [polygon(g.quad.tolist()) for g in gts if g.dont_care]
    labels: list[tuple[int, int] | None] = []
    for word in words:
        poly = polygon(word.poly)
        if poly.area <= 0 or any(poly.intersection(g).area / poly.area > 0.5 for g in dont_care):
            labels.append(None)
            continue
        matched = [text for g, text in care if polygon_iou(poly, g) > 0.5]
        labels.append((int(bool(matched)), int(any(clean_text(t) == clean_text(word.text) for t in matched))))
    return labels


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2) -> LogisticModel:
    """L2-regularised logistic regression (Newton steps) on standardised features, folded back to raw ones."""
    center, scale = x.mean(0), x.std(0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - center) / scale])
    beta = np.zeros(z.shape[1])
    # (a whisker on the bias too, so that a set with one class only still gives finite numbers)
    ridge = np.diag(np.r_[1e-6, np.full(len(beta) - 1, l2)])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-z @ beta))
        gradient = z.T @ (p - y) + ridge @ beta
        hessian = z.T @ (z * (p * (1 - p))[:, None]) + ridge
        beta -= np.linalg.solve(hessian, gradient)
    weights = beta[1:] / scale
    bias = beta[0] - float((beta[1:] * center / scale).sum())
    return LogisticModel(weights=tuple(round(float(w), 4) for w in weights), bias=round(float(bias), 4))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = shared_dir()
    ap.add_argument("--data", type=Path, default=shared / "ic15-train" if shared else None)
    ap.add_argument("--limit", type=int, default=0, help="first N tune photos only (a quick look)")
    ap.add_argument("--score", action="store_true", help="score the tune half with the refitted models")
    ap.add_argument("--check", action="store_true", help="also score the check half, shipped vs refitted")
    ap.add_argument("--model-dir", help="read with this model folder instead of the stock weights")
    args = ap.parse_args(argv)
    if args.data is None or not (args.data / "images").is_dir():
        ap.error("no ICDAR 2015 photos: pass --data DIR (with images/ and gts/)")
    engine = OCREngine(EngineConfig(verify_words=False, model_dir=args.model_dir))
    photos = list_images(args.data / "images")
    numbered = any(image_number(p) is not None for p in photos)
    if args.check and not numbered:
        ap.error("--check needs ICDAR 2015 train (photos named img_N)")
    check = [p for p in photos if image_number(p) not in TUNE] if args.check else []
    if numbered:  # ICDAR 2015 train: the tune half only
        photos = [p for p in photos if image_number(p) in TUNE]
    photos = photos[: args.limit] if args.limit else photos
    all_words = [(path, read_candidates(engine, path)) for path in photos]
    rows = []
    for path, candidates in all_words:
        labels = label([w for w, _ in candidates], gt_path(args.data / "gts", path))
        rows += [
            (features, *lab) for (_, features), lab in zip(candidates, labels, strict=True) if lab is not None
        ]
    x = np.array([r[0] for r in rows])
    models = {
        "TEXT_MODEL": fit_logistic(x, np.array([r[1] for r in rows], dtype=float)),
        "READING_MODEL": fit_logistic(x, np.array([r[2] for r in rows], dtype=float)),
    }
    words = sum(len(c) for _, c in all_words)
    print(f"# {len(photos)} tune photos, {words} words (mean confidence >= {engine.config.min_confidence}), ")
    print(f"# {len(rows)} labelled; features: {', '.join(FEATURES)}")
    for name, model in models.items():
        print(f"{name} = LogisticModel(\n    weights={model.weights},\n    bias={model.bias},\n)")
    script = eval_script(shared)
    if args.score and script:
        print("# tune half with these models:", score(script, args.data, all_words, models))
    if args.check and script:
        checked = [(path, read_candidates(engine, path)) for path in check]
        shipped = {"TEXT_MODEL": TEXT_MODEL, "READING_MODEL": READING_MODEL}
        print("# check half, shipped models:", score(script, args.data, checked, shipped))
        print("# check half, refitted models:", score(script, args.data, checked, models))
    return 0


def read_candidates(engine: OCREngine, path: Path) -> list[tuple[Word, np.ndarray]]:
    """A photo's candidate words above the confidence floor, with their verifier features."""
    image = decode_file(path)
    detections = engine.detect(image)
    readings = engine.recognize(engine.crop(image, detections))
    return [
        (word, features)
        for line in engine.candidate_words(image.shape[:2], detections, readings)
        for word, features in line
        if word.confidence >= engine.config.min_confidence
    ]


def score(script: Path, data: Path, all_words, models: dict[str, LogisticModel]) -> dict:
    """ic15_eval.py's scores of the words the two models keep at the engine's default thresholds."""
    cfg = EngineConfig()
    with tempfile.TemporaryDirectory() as tmp:
        pred = Path(tmp) / "pred.jsonl"
        with open(pred, "w") as f:
            for path, candidates in all_words:
                kept = [
                    w.to_json()
                    for w, features in candidates
                    if models["TEXT_MODEL"].probability(features) >= cfg.min_text_probability
                    and models["READING_MODEL"].probability(features) >= cfg.min_reading_probability
                ]
                f.write(json.dumps({"image": path.name, "words": kept}) + "\n")
        return run_eval(script, pred, data / "gts", only_predicted=True)


if __name__ == "__main__":
    sys.exit(main())
