"""Fine-tune the detector (and the recognizer) on the TUNE half of ICDAR 2015 train, score the CHECK half
beside today's default weights and the stock pipeline, in one invocation.

    python bench/finetune.py [--roles det,rec] [--max-minutes 30] [--epochs 10] [--steps-per-epoch N]
                             [--train-crops] [--model-dir DIR] [--option k=v] [--limit N] [--no-peer]
                             [--generated N] [--work DIR] [--json OUT] [--tune-half-only]

Training sees img_1-img_500 only (its validation split is carved out of them); the check half
(img_501-img_1000) is scored once, at the end, with bench/accuracy.py's own engine run and ic15_eval.py,
beside the peer (RapidOCR's own pipeline, `peer_rapidocr.py --words`).
The guards against forgetting are scored for both weights every time:
- ../shared/word-crops (IIIT5K train, SVT train): word accuracy, case-insensitive, letters and digits,
  as the field scores them; `--train-crops` also trains the recognizer on them (then they no longer guard);
- `--generated N` photos from `wildocr.samples` (hard mode, their own seed): detection and end-to-end;
- ../shared/samples (no ground truth): words read, and how many of them are dictionary words.
`--model-dir` skips training and scores an existing model folder. The folder is read by the engine itself
(`EngineConfig.model_dir`, as `wildocr ocr --model-dir` reads it; the int8 detector is rebuilt from the
new fp32 file); `--option k=v` sets engine options for the tuned run only (e.g. post-processing chosen on
the tune half for the new weights).
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
from accuracy import (
    HALVES,
    link_images,
    parse_option,
    recognition_only,
    run_setting,
    score_groups,
    split_images,
)
from common import (
    REPO,
    decode_file,
    eval_script,
    header_lines,
    image_number,
    in_dictionary,
    list_images,
    peer_script,
    replace_generated_section,
    run_eval,
    run_peer,
    shared_dir,
)

DOC = REPO / "docs" / "accuracy.md"

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


def generated_set(work: Path, count: int) -> Path:
    """`count` hard generated photos (`wildocr.samples`, seed 2024: not the seeds tests and the demo use)
    as an ICDAR folder, so the same scorer reads them."""
    from wildocr.samples import generate

    root = work / "generated"
    if (root / "gts").is_dir() and len(list((root / "gts").iterdir())) == count:
        return root
    lines = generate(str(root / "images"), count=count, seed=2024, hard=True)
    (root / "gts").mkdir(parents=True, exist_ok=True)
    for line in lines:
        rows = [
            ",".join(str(round(v)) for point in w["poly"] for v in point) + "," + w["text"]
            for w in line["words"]
        ]
        stem = Path(line["image"]).stem
        (root / "gts" / f"gt_{stem}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def samples_reading(engine, images: list[Path]) -> dict:
    """What the engine reads on photos without ground truth: words, and words in the dictionary."""
    words = [w.text for p in images for w in engine.read([decode_file(p)])[0].words]
    return {"words": len(words), "dictionary_words": sum(in_dictionary(w) for w in words), "texts": words}


def evaluate(
    name: str,
    images: list[Path],
    groups: dict,
    gt_dir: Path,
    work: Path,
    guards: dict,
    rec_only: bool,
    model_dir: Path | None = None,
    options: dict | None = None,
) -> dict:
    from wildocr.engine import EngineConfig, OCREngine

    settings = {"model_dir": str(model_dir) if model_dir else None, **(options or {})}
    engine = OCREngine(EngineConfig().with_options(**settings))
    run = run_setting(engine, name, settings, images, work / f"{name}.jsonl", chunk=8)
    scorer = eval_script(shared_dir())
    result: dict = {
        "options": options or {},
        "seconds": round(run.seconds, 1),
        "images_per_s": round(run.images_per_s, 3),
    }
    if scorer:
        result["scores"] = score_groups(scorer, work / f"{name}.jsonl", gt_dir, groups)
    if rec_only:
        result["rec_only"] = {g: recognition_only(engine, v, gt_dir)["accuracy"] for g, v in groups.items()}
    result["crops"] = {k: round(crop_accuracy(engine, v), 4) for k, v in guards["crops"].items()}
    generated = guards.get("generated")
    if generated is not None:
        gen_images = list_images(generated / "images")
        pred = work / f"{name}.generated.jsonl"
        run_setting(engine, f"{name}-generated", settings, gen_images, pred, chunk=8)
        result["generated"] = run_eval(scorer, pred, generated / "gts", only_predicted=True) if scorer else {}
        result["generated"]["rec_only"] = recognition_only(engine, gen_images, generated / "gts")["accuracy"]
    if guards.get("samples"):
        result["samples"] = samples_reading(engine, guards["samples"])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="ICDAR 2015 train folder (default ../shared/ic15-train)")
    ap.add_argument("--roles", default="det", help="det, rec or det,rec (trained in that order, one folder)")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="per role")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps-per-epoch", type=int, default=50, help="validation every N batches")
    ap.add_argument(
        "--train-crops",
        action="store_true",
        help="train rec on ../shared/word-crops too (they are scored either way, then no longer a guard)",
    )
    ap.add_argument("--model-dir", type=Path, help="score this model folder instead of training one")
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="engine option for the tuned weights only (repeatable), e.g. det_thresh=0.25",
    )
    ap.add_argument("--generated", type=int, default=40, help="generated photos to score (0: none)")
    ap.add_argument("--no-peer", action="store_true", help="leave out the stock pipeline's row")
    ap.add_argument("--no-rec-only", action="store_true", help="skip reading the GT boxes (det-only folders)")
    ap.add_argument("--limit", type=int, default=0, help="score the first N check-half photos only")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument(
        "--write-docs", action="store_true", help="rewrite the generated block in docs/accuracy.md"
    )
    ap.add_argument(
        "--tune-half-only",
        action="store_true",
        help="only make WORK/tune-half (links to img_1-img_500), print its path (bench/finetune_recipe.sh)",
    )
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
    if args.tune_half_only:
        print(tune_half(data, work))
        return 0
    payload: dict = {"argv": argv if argv is not None else sys.argv[1:]}
    folder = args.model_dir
    if folder is None:
        from wildocr.train.fit import TrainSettings, train

        folder = work / "model"
        tune = tune_half(data, work)
        crop_dirs = (
            [p.parent for p in sorted((shared / "word-crops").glob("*/labels.tsv"))]
            if args.train_crops and shared
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
    guards: dict = {"crops": read_crops(shared) if shared else {}}
    if args.generated > 0:
        guards["generated"] = generated_set(work, args.generated)
    if shared and (shared / "samples" / "images").is_dir():
        guards["samples"] = list_images(shared / "samples" / "images")
    options = {k: v for spec in args.option for k, v in parse_option(f"tuned:{spec}")[1].items()}
    rec_only = not args.no_rec_only
    payload["default"] = evaluate("default", images, groups, data / "gts", work, guards, rec_only)
    payload["tuned"] = evaluate(
        "tuned", images, groups, data / "gts", work, guards, rec_only, folder, options
    )
    peer_tool = peer_script(shared)
    if not args.no_peer and peer_tool is not None:
        pred = work / "peer.jsonl"
        payload["peer"] = run_peer(peer_tool, link_images(images, work / "peer-images"), pred)
        scorer = eval_script(shared)
        if scorer:
            payload["peer"]["scores"] = score_groups(scorer, pred, data / "gts", groups)
    print(f"check half: {len(images)} photos; model folder {folder}; tuned options {options or '-'}")
    table = results_table(payload)
    print(table)
    if args.write_docs:
        argv_used = ["bench/finetune.py", *(argv if argv is not None else sys.argv[1:])]
        body = "\n".join([*header_lines(argv_used), "", training_lines(folder), "", table, "", LEGEND])
        replace_generated_section(DOC, "finetune", "bench/finetune.py", body, "Accuracy")
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


LEGEND = (
    "Check half: img_501-img_1000 of ICDAR 2015 train, never seen in training (ic15_eval.py: det IoU > 0.5; "
    "e2e also the same text, case-insensitive). default: today's shipped weights and settings; tuned: the "
    "model folder; peer: the stock RapidOCR pipeline (`peer_rapidocr.py --words`). rec-only: the engine's "
    "crop + recognizer on the ground-truth boxes. crops: ../shared/word-crops, word accuracy (letters and "
    "digits, case-insensitive). generated: hard photos from `wildocr.samples` (seed 2024). samples: "
    "../shared/samples (no ground truth): words read (of them dictionary words)."
)


def training_lines(folder: Path) -> str:
    """What the folder's manifest says of its training: per role, data, settings, time, validation."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"Model folder: {folder} (no readable manifest)"
    training, metrics = manifest.get("training") or {}, manifest.get("metrics") or {}
    lines = [f"Model folder `{manifest.get('name', folder.name)}` ({', '.join(manifest.get('models', {}))}):"]
    for role, settings in (training.get("settings") or {}).items():
        val = metrics.get(f"{role}_validation") or {}
        keys = (
            "lr",
            "batch_size",
            "max_steps",
            "patience",
            "max_minutes",
            "augment",
            "limit_side",
            "train_items",
            "val_items",
        )
        shown = ", ".join(f"{k} {settings[k]}" for k in keys if k in settings)
        base, best = val.get("base") or {}, val.get("best") or {}
        scores = ", ".join(
            f"{k.replace('_', ' ')} {base[k]:.3f} -> {best.get(k, float('nan')):.3f}"
            for k in ("loss", "word_accuracy", "det_hmean", "e2e_hmean")
            if k in base
        )
        kept_by = f" by {val['selected_by']}" if "selected_by" in val else ""
        lines.append(
            f"- {role}: {shown}; {val.get('steps')} steps, best epoch {val.get('best_epoch')}{kept_by}, "
            f"stopped by {val.get('stopped')}; validation {scores}"
        )
    if "seconds" in training:
        minutes = training["seconds"] / 60
        lines.append(
            f"- training time in all (with the base folders'): {minutes:.1f} min on {training.get('device')}"
        )
    fitted = (manifest.get("verifier") or {}).get("fitted_on")
    if fitted:
        data = ", ".join(
            f"{Path(d.get('path', '?')).name} ({d.get('items')})" for d in fitted.get("data", [])
        )
        lines.append(
            f"- its own word verifier (`wildocr train verifier`): fitted on {data}, {fitted.get('labelled')} "
            f"labelled words of {fitted.get('photos')} photos, {fitted.get('seconds', 0) / 60:.1f} min"
        )
    return "\n".join(lines)


def results_table(payload: dict) -> str:
    """One row per weights (and the peer): check half, rec-only, crops, generated photos, samples."""

    def prf(scores: dict | None, key: str) -> str:
        part = (scores or {}).get(key, {})
        return "/".join(f"{part.get(m, float('nan')):.3f}" for m in ("precision", "recall", "hmean"))

    def hmean(scores: dict, key: str) -> float:
        return scores.get(key, {}).get("hmean", float("nan"))

    lines = [
        "| weights | check det P/R/hmean | check e2e P/R/hmean | rec-only on GT boxes | crops | "
        "generated det / e2e hmean | samples: words (dictionary) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("default", "tuned", "peer"):
        r = payload.get(name)
        if r is None:
            continue
        sc = r.get("scores", {}).get("check")
        crops_text = ", ".join(f"{k} {v:.3f}" for k, v in r.get("crops", {}).items()) or "-"
        rec_text = f"{r['rec_only']['check']:.3f}" if "rec_only" in r else "-"
        gen = r.get("generated")
        gen_text = f"{hmean(gen, 'det'):.3f} / {hmean(gen, 'e2e'):.3f}" if gen else "-"
        smp = r.get("samples")
        smp_text = f"{smp['words']} ({smp['dictionary_words']})" if smp else "-"
        label = "peer (rapidocr)" if name == "peer" else name
        cells = [label, prf(sc, "det"), prf(sc, "e2e"), rec_text, crops_text, gen_text, smp_text]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
