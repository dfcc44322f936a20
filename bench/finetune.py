"""Fine-tune the detector (and the recognizer) on the TUNE half of ICDAR 2015 train, score the CHECK half
beside the stock weights, in one invocation.

    python bench/finetune.py [--roles det,rec] [--max-minutes 30] [--epochs 10] [--steps-per-epoch N]
                             [--crops] [--model-dir DIR] [--limit N] [--work DIR] [--json OUT]

Training sees img_1-img_500 only (its validation split is carved out of them); the check half
(img_501-img_1000) is scored once, at the end, with bench/accuracy.py's own engine run and ic15_eval.py.
`--crops` adds ../shared/word-crops to the recognizer's training data and scores the crops (case-insensitive,
letters and digits, as the field scores them) with both models: the guard against forgetting.
`--model-dir` skips training and scores an existing model folder. The folder is read by the engine itself
(`EngineConfig.model_dir`, as `wildocr ocr --model-dir` reads it; the int8 detector is rebuilt from the
new fp32 file), with the default settings otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import HALVES, recognition_only, run_setting, score_groups, split_images
from common import decode_file, eval_script, image_number, list_images, shared_dir

ROLE_STOCK = {"det": "PP-OCRv6_det_small.onnx", "rec": "PP-OCRv6_rec_small.onnx"}


def tune_half(data: Path, work: Path) -> Path:
    """An ICDAR folder of symlinks holding the tune half only: training can never see a check photo."""
    root = work / "tune-half"
    for sub in ("images", "gts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image in list_images(data / "images"):
        if image_number(image) in HALVES["tune"]:
            for src, dst in (
                (image, root / "images" / image.name),
                (data / "gts" / f"gt_{image.stem}.txt", None),
            ):
                target = dst or root / "gts" / src.name
                if not target.exists():
                    target.symlink_to(src.resolve())
    return root


def crop_accuracy(engine, crops: list[tuple[Path, str]]) -> float:
    """Word accuracy on labelled crops, case-insensitive, letters and digits only (as the field scores)."""

    def norm(text: str) -> str:
        return re.sub(r"[^0-9a-z]", "", text.lower())

    readings = engine.recognize([decode_file(p) for p, _ in crops])
    return sum(norm(r.text) == norm(t) for r, (_, t) in zip(readings, crops, strict=True)) / max(
        len(crops), 1
    )


def read_crops(shared: Path) -> dict[str, list[tuple[Path, str]]]:
    sets = {}
    for folder in sorted((shared / "word-crops").glob("*/labels.tsv")):
        rows = [
            line.split("\t", 1) for line in folder.read_text(encoding="utf-8").splitlines() if "\t" in line
        ]
        sets[folder.parent.name] = [(folder.parent / "crops" / name, text) for name, text in rows]
    return sets


def evaluate(
    name: str,
    images: list[Path],
    groups: dict,
    gt_dir: Path,
    work: Path,
    crops: dict,
    rec_only: bool,
    model_dir: Path | None = None,
) -> dict:
    from dataclasses import replace

    from wildocr.engine import EngineConfig, OCREngine

    engine = OCREngine(replace(EngineConfig(), model_dir=str(model_dir) if model_dir else None))
    run = run_setting(engine, name, {}, images, work / f"{name}.jsonl", chunk=8)
    scorer = eval_script(shared_dir())
    result: dict = {"seconds": round(run.seconds, 1), "images_per_s": round(run.images_per_s, 3)}
    if scorer:
        result["scores"] = score_groups(scorer, work / f"{name}.jsonl", gt_dir, groups)
    if rec_only:
        result["rec_only"] = {g: recognition_only(engine, v, gt_dir)["accuracy"] for g, v in groups.items()}
    result["crops"] = {k: round(crop_accuracy(engine, v), 4) for k, v in crops.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="ICDAR 2015 train folder (default ../shared/ic15-train)")
    ap.add_argument("--roles", default="det", help="det, rec or det,rec (trained in that order, one folder)")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="per role")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps-per-epoch", type=int, default=50, help="validation every N batches")
    ap.add_argument(
        "--crops", action="store_true", help="train rec on ../shared/word-crops too, and score them"
    )
    ap.add_argument("--model-dir", type=Path, help="score this model folder instead of training one")
    ap.add_argument("--no-rec-only", action="store_true", help="skip reading the GT boxes (det-only folders)")
    ap.add_argument("--limit", type=int, default=0, help="score the first N check-half photos only")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, help="write every number here")
    args = ap.parse_args(argv)

    shared = shared_dir()
    data = args.data or (shared / "ic15-train" if shared else None)
    if data is None or not (data / "images").is_dir():
        print(
            "SKIP finetune: no ICDAR 2015 data (pass --data or put ../shared beside the checkout)",
            file=sys.stderr,
        )
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="wildocr-finetune-"))
    work.mkdir(parents=True, exist_ok=True)
    payload: dict = {"argv": argv if argv is not None else sys.argv[1:]}
    folder = args.model_dir
    if folder is None:
        from wildocr.train.fit import TrainSettings, train

        folder = work / "model"
        tune = tune_half(data, work)
        crop_dirs = (
            [p.parent for p in sorted((shared / "word-crops").glob("*/labels.tsv"))]
            if args.crops and shared
            else []
        )
        base = None
        for role in [r for r in args.roles.split(",") if r]:
            settings = TrainSettings(
                epochs=args.epochs, max_steps=args.steps_per_epoch, max_minutes=args.max_minutes
            )
            started = time.monotonic()
            result = train(role, [tune, *(crop_dirs if role == "rec" else [])], folder, settings, base=base)
            base = folder
            payload[f"train_{role}"] = {k: v for k, v in result.items() if k != "history"} | {
                "history": result["history"],
                "wall_seconds": round(time.monotonic() - started, 1),
            }
            print(f"[train {role}] {json.dumps(payload[f'train_{role}'], default=str)}", file=sys.stderr)
    groups = split_images(list_images(data / "images"), "check", args.limit)
    if "check" not in groups:
        print(
            f"no check-half photos (img_501-img_1000) under {data / 'images'}: nothing to score",
            file=sys.stderr,
        )
        return 1
    images = groups["check"]
    crops = read_crops(shared) if args.crops and shared else {}
    rec_only = not args.no_rec_only
    payload["stock"] = evaluate("stock", images, groups, data / "gts", work, crops, rec_only)
    payload["tuned"] = evaluate("tuned", images, groups, data / "gts", work, crops, rec_only, folder)
    print(f"check half: {len(images)} photos; model folder {folder}")
    print("| weights | det P/R/hmean | e2e P/R/hmean | rec-only on GT boxes | crops |")
    print("|---|---|---|---|---|")
    for name in ("stock", "tuned"):
        r = payload[name]
        sc = r.get("scores", {}).get("check", {})
        prf = [
            "/".join(f"{sc.get(k, {}).get(m, float('nan')):.3f}" for m in ("precision", "recall", "hmean"))
            for k in ("det", "e2e")
        ]
        crops_text = ", ".join(f"{k} {v:.3f}" for k, v in r["crops"].items()) or "-"
        rec_text = f"{r['rec_only']['check']:.3f}" if "rec_only" in r else "-"
        print(f"| {name} | {prf[0]} | {prf[1]} | {rec_text} | {crops_text} |")
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
