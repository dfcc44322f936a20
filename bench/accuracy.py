"""Accuracy on real photos (ICDAR 2015 train, in ../shared): wildocr settings side by side with the peer.

    python bench/accuracy.py [--split tune|check|all] [--limit N] [--settings default,no-cls,...]
                             [--option NAME:k=v,k=v] [--no-peer] [--no-rec-only] [--dump DIR]
                             [--write-docs] [--json OUT]

One invocation runs every named wildocr setting and the peer (RapidOCR's own pipeline) over the same
images, scores them all with ic15_eval.py, and prints one table: only numbers taken side by side mean
anything on a shared machine. The 1,000 photos are split once and for all: settings and methods are
chosen on the TUNE half (img_1-img_500) and must hold on the CHECK half (img_501-img_1000), which is the
one quoted; `--split all` (the default) scores both halves side by side. The recognition-only column
reads the ground-truth boxes through the
engine's own crop and recogniser, so a low end-to-end score can be put on the detector or the recogniser.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    REPO,
    chunked,
    clean_text,
    cpu_seconds,
    decode_file,
    eval_script,
    gt_path,
    header_lines,
    image_number,
    in_dictionary,
    list_images,
    markdown_table,
    peer_script,
    polygon,
    polygon_iou,
    read_icdar_gt,
    replace_generated_section,
    run_eval,
    run_peer,
    shared_dir,
)

# Named settings: name -> EngineConfig.with_options(**kwargs). Add a line to try a new variant; one-off
# variants also work from the command line: --option "name:det_limit_side=1280,min_confidence=0.3".
SETTINGS: dict[str, dict[str, object]] = {
    "default": {},
    # The build before issue 14's levers (docs/benchmarks.md, "Levers on the 1,000 photos").
    "before14": {
        "split_at_symbols": False,
        "trim_to_characters": False,
        "verify_words": False,
        "min_confidence": 0.7,
    },
    # The default before the word verifier: one threshold on the mean character probability.
    "no-verify": {"verify_words": False, "min_confidence": 0.7},
    "no-symbol-split": {"split_at_symbols": False},
    "no-trim": {"trim_to_characters": False},
    # Spaces from the arg-max only, as before 2026-12-07 (RecognizerConfig.space_prob).
    "argmax-spaces": {"rec_space_prob": None},
    "fp32-det": {"det_precision": "fp32"},
    "no-cls": {"use_orientation": False},
    "det960": {"det_limit_side": 960},
    "det1280": {"det_limit_side": 1280},
    "det-thresh0.2": {"det_thresh": 0.2},
    "det-box0.6": {"det_box_thresh": 0.6},
    "unclip2.0": {"det_unclip_ratio": 2.0},
    "pad0": {"pad_ratio": 0.0},
    "conf0.3": {"verify_words": False, "min_confidence": 0.3},
    "conf0.5": {"verify_words": False, "min_confidence": 0.5},
    "boxh1.0": {"box_height_scale": 1.0},
}
PEER = "peer (rapidocr)"
DOC = REPO / "docs" / "benchmarks.md"

# The fixed split of ICDAR 2015 train (1,000 photos): choose on TUNE, quote CHECK. Photos of other sets
# (--data, names not img_N) form one group, "all".
HALVES: dict[str, range] = {"tune": range(1, 501), "check": range(501, 1001)}
SPLITS = ("tune", "check", "all")


def split_images(images: list[Path], split: str, limit: int = 0) -> dict[str, list[Path]]:
    """Group name -> its images (first `limit` of each group when limit > 0), in the peer's order."""
    groups: dict[str, list[Path]] = {}
    for half in ("tune", "check") if split == "all" else (split,):
        members = [p for p in images if image_number(p) in HALVES[half]]
        if members:
            groups[half] = members[:limit] if limit else members
    if not groups and split == "all":  # not an ICDAR-2015-train-named set: one group
        groups["all"] = images[:limit] if limit else images
    return groups


@dataclass
class SettingRun:
    """One engine setting's pass over the images: predictions, speed, scores."""

    name: str
    options: dict[str, object]
    images: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    words: int = 0
    predictions: dict[str, list[dict]] = field(default_factory=dict)  # image name -> words (to_json)
    scores: dict[str, dict] = field(default_factory=dict)  # group (tune/check) -> ic15_eval summary
    rec_only: dict[str, dict] = field(default_factory=dict)  # group -> recognition-only result

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def parse_option(spec: str) -> tuple[str, dict[str, object]]:
    """`name:k=v,k=v` -> (name, {k: literal(v)}); values are Python literals, else strings."""
    name, _, body = spec.partition(":")
    if not name or not body:
        raise argparse.ArgumentTypeError(f"--option wants NAME:key=value[,key=value], got {spec!r}")
    options: dict[str, object] = {}
    for item in body.split(","):
        key, _, raw = item.partition("=")
        try:
            options[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = raw.strip()
    return name, options


def build_engine(options: dict[str, object]):  # -> OCREngine (import kept lazy: --help stays fast)
    from wildocr.engine import EngineConfig, OCREngine

    return OCREngine(EngineConfig().with_options(**options))


def run_setting(engine, name: str, options: dict, images: list[Path], out: Path, chunk: int) -> SettingRun:
    """Decode → engine.read in chunks → JSON lines; the clock covers this loop only, not model loading."""
    run = SettingRun(name, options)
    cpu_start, start = cpu_seconds(), time.perf_counter()
    with open(out, "w", encoding="utf-8") as f:
        for group in chunked(images, chunk):
            results = engine.read([decode_file(p) for p in group])
            for path, result in zip(group, results, strict=True):
                words = [w.to_json() for w in result.words]
                run.predictions[path.name] = words
                run.words += len(words)
                f.write(json.dumps({"image": path.name, "words": words}) + "\n")
    run.seconds = time.perf_counter() - start
    run.cpu_seconds = cpu_seconds() - cpu_start
    run.images = len(images)
    return run


def recognition_only(engine, images: list[Path], gt_dir: Path, max_errors: int = 40) -> dict:
    """Word accuracy of the engine's crop + recogniser on the ground-truth quadrilaterals ('###' skipped)."""
    from wildocr.engine import Detection
    from wildocr.engine.types import Quad

    crops: list[np.ndarray] = []
    truth: list[tuple[str, str]] = []  # (image name, gt text)
    for path in images:
        gt = [w for w in read_icdar_gt(gt_path(gt_dir, path)) if not w.ignore]
        if not gt:
            continue
        image = decode_file(path)
        dets = [Detection(quad=cast(Quad, tuple(map(tuple, w.quad.tolist()))), score=1.0) for w in gt]
        crops.extend(engine.crop(image, dets))
        truth.extend((path.name, w.text) for w in gt)
    start = time.perf_counter()
    readings = []
    for group in chunked(crops, 512):  # bounded memory for the normalised batches
        readings.extend(engine.recognize(group))
    seconds = time.perf_counter() - start
    right = right_dict = n_dict = 0
    errors: list[dict] = []
    for (image_name, text), reading in zip(truth, readings, strict=True):
        ok = clean_text(text) == clean_text(reading.text)
        right += ok
        if in_dictionary(text):
            n_dict += 1
            right_dict += ok
        if not ok and len(errors) < max_errors:
            errors.append(
                {
                    "image": image_name,
                    "gt": text,
                    "read": reading.text,
                    "confidence": round(reading.confidence, 3),
                }
            )
    n = len(truth)
    return {
        "words": n,
        "accuracy": round(right / n, 4) if n else 0.0,
        "dict_words": n_dict,
        "dict_accuracy": round(right_dict / n_dict, 4) if n_dict else 0.0,
        "crops_per_s": round(n / seconds, 2) if seconds else 0.0,
        "errors": errors,
    }


def rec_only_key(engine) -> str:
    """Settings that differ only in detection or filtering share one recognition-only result."""
    c = engine.config
    return repr((c.recognizer, c.pad_ratio, c.use_orientation, c.device, c.threads))


# -- overlays ---------------------------------------------------------------------------------------
GREEN, ORANGE, MAGENTA, GREY, RED = (40, 200, 40), (0, 150, 255), (255, 0, 255), (150, 150, 150), (0, 0, 255)


def _match_gt(gt: list, preds: list[dict]) -> list[tuple[str, str | None]]:
    """Per GT word: 'read' (a prediction with IoU > 0.5 and the same text), 'wrong' (box only), 'missed'."""
    pred_polys = [(polygon(w["poly"]), w["text"]) for w in preds]
    out: list[tuple[str, str | None]] = []
    for g in gt:
        if g.ignore:
            out.append(("dontcare", None))
            continue
        gp, best, best_text = polygon(g.quad.tolist()), 0.0, None
        for pp, text in pred_polys:
            iou = polygon_iou(gp, pp)
            if iou > best:
                best, best_text = iou, text
        if best <= 0.5:
            out.append(("missed", None))
        else:
            out.append(("read" if clean_text(best_text or "") == clean_text(g.text) else "wrong", best_text))
    return out


def dump_overlays(
    engine, run: SettingRun, images: list[Path], gt_dir: Path, out_dir: Path, count: int, names: list[str]
) -> list[Path]:
    """Side by side: GT (green read / orange misread / magenta missed / grey ###) and predictions (red),
    and the detector's probability map as a heatmap. By default the images with most missed GT words."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    by_name = {p.name: p for p in images}
    matches = {
        p.name: _match_gt(read_icdar_gt(gt_path(gt_dir, p)), run.predictions.get(p.name, [])) for p in images
    }
    if names:
        chosen = [n for n in names if n in by_name]
    else:
        chosen = sorted(by_name, key=lambda n: -sum(m == "missed" for m, _ in matches[n]))[:count]
    written: list[Path] = []
    for name in chosen:
        image = decode_file(by_name[name])
        gt = read_icdar_gt(gt_path(gt_dir, by_name[name]))
        left = image.copy()
        colours = {"read": GREEN, "wrong": ORANGE, "missed": MAGENTA, "dontcare": GREY}
        for g, (status, _) in zip(gt, matches[name], strict=True):
            cv2.polylines(left, [g.quad.astype(np.int32)], True, colours[status], 2)
        for w in run.predictions.get(name, []):
            pts = np.array(w["poly"], dtype=np.int32)
            cv2.polylines(left, [pts], True, RED, 1)
            x, y = int(pts[:, 0].min()), int(pts[:, 1].min()) - 3
            cv2.putText(left, w["text"], (x, max(y, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
            cv2.putText(left, w["text"], (x, max(y, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, RED, 1)
        prob = engine.detector.probability_map(image)
        heat = cv2.applyColorMap((np.clip(prob, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        right = cv2.addWeighted(grey, 0.35, heat, 0.65, 0)
        for g in gt:
            cv2.polylines(right, [g.quad.astype(np.int32)], True, (255, 255, 255), 1)
        panel = np.hstack([left, right])
        counts = {k: sum(m == k for m, _ in matches[name]) for k in ("read", "wrong", "missed", "dontcare")}
        legend = (
            f"{name} [{run.name}]  GT green=read {counts['read']}  orange=misread {counts['wrong']}  "
            f"magenta=missed {counts['missed']}  grey=### {counts['dontcare']}  "
            "red=predicted | right: det prob"
        )
        bar = np.full((28, panel.shape[1], 3), 255, dtype=np.uint8)
        cv2.putText(bar, legend, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
        path = out_dir / f"{run.name}_{Path(name).stem}.png"
        cv2.imwrite(str(path), np.vstack([bar, panel]))
        written.append(path)
    return written


# -- report -----------------------------------------------------------------------------------------
def _prf(scores: dict | None, key: str) -> str:
    if not scores:
        return "–"
    s = scores[key]
    return f"{s['precision']:.3f} / {s['recall']:.3f} / {s['hmean']:.3f}"


def _options_text(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "(defaults)"


def results_table(runs: list[SettingRun], peer: dict | None, groups: list[str]) -> str:
    """One row per setting; detection and end-to-end P / R / H of every group (half) side by side."""
    header = ["setting", "options"]
    for g in groups:
        header += [f"det P / R / H ({g})", f"e2e P / R / H ({g})"]
    header += [f"rec-only ({' / '.join(groups)})", "images/s", "CPU s/image", "speed vs peer: wall (CPU)"]
    peer_ips = peer["images_per_s"] if peer else 0.0
    peer_cpu = peer["cpu_seconds"] / peer["images"] if peer and peer.get("images") else 0.0
    rows = []
    for run in runs:
        rec = run.rec_only
        rec_text = " / ".join(f"{rec[g]['accuracy']:.3f}" if g in rec else "–" for g in groups)
        cpu = run.cpu_seconds / run.images if run.images else 0.0
        ratio = f"{run.images_per_s / peer_ips:.2f}×" if peer_ips else "–"
        if peer_cpu and cpu:
            ratio += f" ({peer_cpu / cpu:.2f}×)"
        row = [run.name, _options_text(run.options)]
        for g in groups:
            row += [_prf(run.scores.get(g), "det"), _prf(run.scores.get(g), "e2e")]
        rows.append([*row, rec_text, f"{run.images_per_s:.3f}", f"{cpu:.2f}", ratio])
    if peer:
        row = [PEER, "`peer_rapidocr.py --words`"]
        for g in groups:
            row += [_prf(peer.get("scores", {}).get(g), "det"), _prf(peer.get("scores", {}).get(g), "e2e")]
        rows.append([*row, "–", f"{peer_ips:.3f}", f"{peer_cpu:.2f}", "1.00×"])
    return markdown_table(header, rows)


def docs_body(
    argv: list[str], runs: list[SettingRun], peer: dict | None, groups: dict[str, list[Path]]
) -> str:
    described = ", ".join(
        f"{g} = {len(v)} photos ({v[0].name} … {v[-1].name})" if v else g for g, v in groups.items()
    )
    lines = [
        *header_lines(argv),
        "",
        f"Images: ICDAR 2015 train (`shared/ic15-train`), {described}.",
        "",
        results_table(runs, peer, list(groups)),
        "",
    ]
    lines.append(
        "det: detection only (IoU > 0.5); e2e: IoU > 0.5 and the same text (case-insensitive, outer "
        "punctuation ignored; GT words outside the competition dictionary rule do not count). "
        "rec-only: word accuracy of the engine's crop + recogniser on the ground-truth boxes (not `###`). "
        "images/s: decode + `engine.read` + JSON lines over both halves, model loading "
        "excluded; the peer times its own loop (imread + pipeline). CPU s/image: user + system CPU time of "
        "the same loop (the peer's includes its model loading, about a second); it moves less than wall time "
        "with the neighbours' load on a shared machine, so the CPU ratio is the steadier one."
    )
    rec = next((r.rec_only for r in runs if r.rec_only), {})
    for g, r in rec.items():
        lines.append(
            f"Recognition-only ({g}): {r['words']} GT words ({r['dict_words']} in the e2e set), "
            f"accuracy {r['accuracy']:.3f} (e2e words {r['dict_accuracy']:.3f}), "
            f"{r['crops_per_s']:.1f} crops/s."
        )
    return "\n".join(lines)


def write_subset(pred: Path, names: set[str], out: Path) -> Path:
    """The JSON lines of `pred` whose image is in `names` (one group's predictions, for the scorer)."""
    with open(pred, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        for line in src:
            if line.strip() and json.loads(line)["image"] in names:
                dst.write(line)
    return out


def score_groups(scorer: Path, pred: Path, gt_dir: Path, groups: dict[str, list[Path]]) -> dict[str, dict]:
    """ic15_eval.py on each group's predictions (only the group's images are scored)."""
    scores = {}
    for g, members in groups.items():
        subset = write_subset(pred, {p.name for p in members}, pred.with_suffix(f".{g}.jsonl"))
        scores[g] = run_eval(scorer, subset, gt_dir, only_predicted=True)
    return scores


def link_images(images: list[Path], folder: Path) -> Path:
    """A folder of symlinks to `images`: the peer reads a folder, the split picks files from it."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in images:
        link = folder / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return folder


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="folder with images/ and gts/ (default: ../shared/ic15-train)")
    ap.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="tune = img_1-img_500, check = img_501-img_1000, all = both side by side (default)",
    )
    ap.add_argument("--limit", type=int, default=0, help="first N images of each half only")
    ap.add_argument(
        "--settings", default="default", help=f"comma-separated names or 'all' (known: {', '.join(SETTINGS)})"
    )
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        type=parse_option,
        metavar="NAME:k=v,...",
        help="an extra ad-hoc setting (repeatable)",
    )
    ap.add_argument("--chunk", type=int, default=16, help="images per engine.read call")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--no-rec-only", action="store_true")
    ap.add_argument("--out", type=Path, help="folder for prediction JSON lines (default: a temporary one)")
    ap.add_argument("--dump", type=Path, help="write overlay PNGs here (first setting)")
    ap.add_argument("--dump-count", type=int, default=6)
    ap.add_argument("--dump-images", default="", help="comma-separated image names (default: most missed)")
    ap.add_argument("--json", type=Path, help="write every number (and recognition errors) here")
    ap.add_argument("--write-docs", action="store_true", help=f"rewrite the table in {DOC.relative_to(REPO)}")
    args = ap.parse_args(argv)

    shared = shared_dir()
    if args.data is None:
        if shared is None or not (shared / "ic15-train").is_dir():
            print(
                f"SKIP accuracy: no evaluation data at {REPO.parent / 'shared'} (pass --data or set "
                "WILDOCR_SHARED)",
                file=sys.stderr,
            )
            return 0
        args.data = shared / "ic15-train"
    image_dir, gt_dir = args.data / "images", args.data / "gts"
    groups = split_images(list_images(image_dir), args.split, args.limit) if image_dir.is_dir() else {}
    images = [p for members in groups.values() for p in members]
    if not images:
        print(f"no images of split {args.split!r} under {image_dir}", file=sys.stderr)
        return 1

    names = list(SETTINGS) if args.settings == "all" else [s for s in args.settings.split(",") if s]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)} (or use --option)")
    chosen = [(n, SETTINGS[n]) for n in names] + list(args.option)

    scorer, peer_tool = eval_script(shared), peer_script(shared)
    if scorer is None:
        print("note: ic15_eval.py not found under shared/tools: scores are left blank", file=sys.stderr)
    work = args.out or Path(tempfile.mkdtemp(prefix="wildocr-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = ", ".join(f"{g} {len(v)}" for g, v in groups.items())
    print(f"{len(images)} images ({sizes}) from {image_dir}; predictions under {work}", file=sys.stderr)

    runs: list[SettingRun] = []
    rec_cache: dict[str, dict[str, dict]] = {}
    for name, options in chosen:
        engine = build_engine(options)
        pred = work / f"{name}.jsonl"
        run = run_setting(engine, name, options, images, pred, args.chunk)
        print(
            f"[{name}] {run.images} images in {run.seconds:.1f}s = {run.images_per_s:.3f} images/s "
            f"({run.cpu_seconds / run.images:.2f} CPU s/image), "
            f"{run.words} words",
            file=sys.stderr,
        )
        if scorer:
            run.scores = score_groups(scorer, pred, gt_dir, groups)
            for g, sc in run.scores.items():
                print(f"[{name}] {g}: det {_prf(sc, 'det')}  e2e {_prf(sc, 'e2e')}", file=sys.stderr)
        if not args.no_rec_only:
            key = rec_only_key(engine)
            if key not in rec_cache:
                rec_cache[key] = {g: recognition_only(engine, v, gt_dir) for g, v in groups.items()}
            run.rec_only = rec_cache[key]
            for g, r in run.rec_only.items():
                print(
                    f"[{name}] {g}: recognition-only on GT boxes {r['accuracy']:.3f} ({r['words']} words), "
                    f"dict words {r['dict_accuracy']:.3f}",
                    file=sys.stderr,
                )
        if args.dump and not runs:
            wanted = [s for s in args.dump_images.split(",") if s]
            paths = dump_overlays(engine, run, images, gt_dir, args.dump, args.dump_count, wanted)
            print(f"[{name}] {len(paths)} overlays under {args.dump}", file=sys.stderr)
        runs.append(run)
        del engine

    peer: dict | None = None
    if not args.no_peer:
        if peer_tool is None:
            print("note: peer_rapidocr.py not found under shared/tools: no peer row", file=sys.stderr)
        else:
            pred = work / "peer.jsonl"
            peer = run_peer(peer_tool, link_images(images, work / "peer-images"), pred)
            print(f"[peer] {peer['images']} images, {peer['images_per_s']:.3f} images/s", file=sys.stderr)
            if scorer:
                peer["scores"] = score_groups(scorer, pred, gt_dir, groups)

    print(results_table(runs, peer, list(groups)))
    for run in runs[:1]:
        errors = [e for r in run.rec_only.values() for e in r["errors"]]
        if errors:
            print(f"\nrecognition-only misreads ({run.name}, first 15):")
            for e in errors[:15]:
                print(f"  {e['image']:>12}  gt={e['gt']!r:<20} read={e['read']!r} ({e['confidence']})")
    if args.json:
        payload = {
            "argv": argv,
            "split": args.split,
            "images": len(images),
            "groups": {g: [p.name for p in v] for g, v in groups.items()},
            "settings": [
                {
                    "name": r.name,
                    "options": r.options,
                    "images_per_s": round(r.images_per_s, 4),
                    "seconds": round(r.seconds, 2),
                    "cpu_seconds": round(r.cpu_seconds, 2),
                    "words": r.words,
                    "scores": r.scores,
                    "rec_only": r.rec_only,
                }
                for r in runs
            ],
            "peer": peer,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    if args.write_docs:
        body = docs_body(["bench/accuracy.py", *argv], runs, peer, groups)
        replace_generated_section(DOC, "results", "bench/accuracy.py", body, "Accuracy")
        print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
