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
gain?). The fitting is `wildocr.train.verifier`'s, the same as `wildocr train verifier` writes into a
model folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import eval_script, image_number, run_eval, shared_dir

from wildocr.engine import EngineConfig, OCREngine
from wildocr.engine.verify import FEATURES, STOCK_VERIFIER, Verifier
from wildocr.train.data import Photo, load_dataset
from wildocr.train.verifier import Candidates, fit, labelled_rows, read_photos

TUNE = range(1, 501)


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
    photos = sorted(load_dataset(args.data).photos, key=lambda p: (image_number(p.path) or 0, p.path.name))
    numbered = any(image_number(p.path) is not None for p in photos)
    if args.check and not numbered:
        ap.error("--check needs ICDAR 2015 train (photos named img_N)")
    check = [p for p in photos if image_number(p.path) not in TUNE] if args.check else []
    if numbered:  # ICDAR 2015 train: the tune half only
        photos = [p for p in photos if image_number(p.path) in TUNE]
    photos = photos[: args.limit] if args.limit else photos
    tune = read_photos(engine, photos)
    rows = labelled_rows(tune)
    verifier = fit(rows)
    words = sum(len(c) for _, c in tune)
    print(f"# {len(tune)} tune photos, {words} words (mean confidence >= {engine.config.min_confidence}), ")
    print(f"# {len(rows)} labelled; features: {', '.join(FEATURES)}")
    for name, model in (("TEXT_MODEL", verifier.text), ("READING_MODEL", verifier.reading)):
        print(f"{name} = LogisticModel(\n    weights={model.weights},\n    bias={model.bias},\n)")
    script = eval_script(shared)
    if args.score and script:
        print("# tune half with these models:", score(script, args.data, tune, verifier))
    if args.check and script:
        checked = read_photos(engine, check)
        print("# check half, shipped models:", score(script, args.data, checked, STOCK_VERIFIER))
        print("# check half, refitted models:", score(script, args.data, checked, verifier))
    return 0


def score(script: Path, data: Path, read: list[tuple[Photo, Candidates]], verifier: Verifier) -> dict:
    """ic15_eval.py's scores of the words `verifier` keeps at the engine's default thresholds."""
    cfg = EngineConfig()
    with tempfile.TemporaryDirectory() as tmp:
        pred = Path(tmp) / "pred.jsonl"
        with open(pred, "w") as f:
            for photo, candidates in read:
                kept = []
                for w, features in candidates:
                    is_text, read_right = verifier.probabilities(features)
                    if is_text >= cfg.min_text_probability and read_right >= cfg.min_reading_probability:
                        kept.append(w.to_json())
                f.write(json.dumps({"image": photo.path.name, "words": kept}) + "\n")
        return run_eval(script, pred, data / "gts", only_predicted=True)


if __name__ == "__main__":
    sys.exit(main())
