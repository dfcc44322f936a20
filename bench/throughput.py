"""Throughput of the engine: whole processes against the stock pipeline, stages, batch sizes, and memory.

    python bench/throughput.py [--limit 60] [--pairs 3] [--variant 'LABEL=ARGS'] [--json OUT] [--write-docs]
    python bench/throughput.py --stages [--limit N] [--devices cpu,cuda] [--batch-sizes 1,8,16,32,64,128]
                               [--no-peer] [--json OUT] [--plot OUT.png] [--write-docs]
    python bench/throughput.py --memory-soak 10000 [--soak-every 1000] [--json OUT] [--write-docs]

The default (whole-process) mode measures what a user meets: `wildocr ocr FILES --out X` against
`peer_rapidocr.py DIR OUT --words` (RapidOCR's stock pipeline), each a fresh process with model loading
included, on the same photos (ic15 check half img_501.. when ../shared is there, else generated 1280x720
photos), in alternating pairs; the table holds the medians of wall time, the child's CPU time and its
peak RSS (os.wait4), and the ratios. On a shared machine only ratios from one invocation mean anything.

`--stages` measures inside one process: end to end, per stage, per recogniser batch size, for every device
ONNX Runtime offers (CPU, and CUDA when onnxruntime has CUDAExecutionProvider).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    REPO,
    Stopwatch,
    bench_photos,
    chunked,
    cpu_seconds,
    decode_file,
    header_lines,
    list_images,
    machine_info,
    markdown_table,
    measure_process,
    peak_rss_mb,
    peer_script,
    replace_generated_section,
    reset_peak_rss,
    rss_mb,
    run_peer,
    shared_dir,
    write_synthetic_set,
)

DOC = REPO / "docs" / "benchmarks.md"
STAGES = ("decode", "detect", "crop", "recognize", "assemble", "write")


def photo_folder(limit: int, work: Path) -> tuple[Path, str]:
    """ic15 photos when shared/ is there; else generated sample photos (wildocr.samples)."""
    shared = shared_dir()
    if shared and (shared / "ic15-train" / "images").is_dir():
        return shared / "ic15-train" / "images", "ICDAR 2015 train photos (shared/ic15-train)"
    folder = work / "generated"
    try:
        from wildocr.samples import GROUND_TRUTH_NAME, generate

        generate(str(folder), count=limit, seed=0)
        (folder / GROUND_TRUTH_NAME).unlink()  # a folder of photos only, as the peer expects
        return folder, "generated sample photos (wildocr.samples, seed 0)"
    except ImportError:
        images, _ = write_synthetic_set(work / "synthetic", limit)
        return images, "generated plain text images (bench/common.py)"


def wanted_devices(spec: str) -> list[str]:
    """'auto': CPU, plus CUDA when this onnxruntime build has it."""
    import onnxruntime as ort

    if spec != "auto":
        return [d for d in spec.split(",") if d]
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    return ["cpu", "cuda"] if has_cuda else ["cpu"]


def make_engine(device: str, **options: object):  # -> OCREngine (lazy import keeps --help fast)
    from wildocr.engine import EngineConfig, OCREngine

    return OCREngine(EngineConfig().with_options(device=device, **options))


def end_to_end(engine, images: list[Path], chunk: int, out: Path) -> dict:
    """Decode → engine.read → JSON lines, as the pipeline does; model loading is not on the clock."""
    cpu_start, start = cpu_seconds(), time.perf_counter()
    words = 0
    with open(out, "w", encoding="utf-8") as f:
        for group in chunked(images, chunk):
            results = engine.read([decode_file(p) for p in group])
            for path, result in zip(group, results, strict=True):
                words += len(result.words)
                f.write(json.dumps({"image": path.name, "words": [w.to_json() for w in result.words]}) + "\n")
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    return {
        "cpu_seconds_per_image": round(cpu / len(images), 3),
        "images": len(images),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(images) / seconds, 4),
        "words": words,
    }


def staged(engine, images: list[Path], chunk: int, out: Path) -> tuple[dict, list[np.ndarray]]:
    """The same work through engine.detect / crop / recognize / assemble, each stage on its own clock."""
    watch = Stopwatch()
    all_crops: list[np.ndarray] = []
    with open(out, "w", encoding="utf-8") as f:
        for group in chunked(images, chunk):
            with watch.time("decode"):
                pixels = [decode_file(p) for p in group]
            with watch.time("detect"):
                dets = [engine.detect(img) for img in pixels]
            with watch.time("crop"):
                crops = [engine.crop(img, d) for img, d in zip(pixels, dets, strict=True)]
            flat = [c for cs in crops for c in cs]
            with watch.time("recognize"):
                readings = engine.recognize(flat)
            with watch.time("assemble"):
                words, offset = [], 0
                for img, d in zip(pixels, dets, strict=True):
                    words.append(engine.assemble(img.shape[:2], d, readings[offset : offset + len(d)]))
                    offset += len(d)
            with watch.time("write"):
                for path, ws in zip(group, words, strict=True):
                    f.write(json.dumps({"image": path.name, "words": [w.to_json() for w in ws]}) + "\n")
            all_crops.extend(flat)
    n = len(images)
    total = sum(watch.seconds.values())
    stages = {
        s: {
            "seconds": round(watch.seconds.get(s, 0.0), 3),
            "ms_per_image": round(1000 * watch.seconds.get(s, 0.0) / n, 2),
            "cpu_ms_per_image": round(1000 * watch.cpu_seconds.get(s, 0.0) / n, 2),
            "share": round(watch.seconds.get(s, 0.0) / total, 4) if total else 0.0,
        }
        for s in STAGES
    }
    rec = watch.seconds.get("recognize", 0.0)
    summary = {
        "images": n,
        "seconds": round(total, 3),
        "images_per_s": round(n / total, 4) if total else 0.0,
        "crops": len(all_crops),
        "crops_per_image": round(len(all_crops) / n, 2),
        "recognize_crops_per_s": round(len(all_crops) / rec, 2) if rec else 0.0,
        "stages": stages,
    }
    return summary, all_crops


def batch_sweep(device: str, crops: list[np.ndarray], sizes: list[int]) -> list[dict]:
    """Recognition alone (no orientation classifier) on the same crops, one engine per batch size.

    Each engine reads the crops once untimed first: ONNX Runtime plans each new input shape on first sight,
    and that one-off cost is not what the batch size changes.
    """
    rows = []
    for size in sizes:
        engine = make_engine(device, rec_batch_size=size, use_orientation=False)
        engine.recognize(crops)
        start = time.perf_counter()
        engine.recognize(crops)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "batch_size": size,
                "crops": len(crops),
                "seconds": round(seconds, 3),
                "crops_per_s": round(len(crops) / seconds, 2),
            }
        )
        print(f"  [{device}] batch {size:>4}: {rows[-1]['crops_per_s']:8.1f} crops/s", file=sys.stderr)
        del engine
        gc.collect()
    return rows


def measure_device(device: str, images: list[Path], args: argparse.Namespace, work: Path) -> dict:
    from wildocr.engine import EngineConfig

    engine = make_engine(device)
    provider = engine.provider
    rss_loaded = rss_mb()
    reset_peak_rss()  # the peak of the measured loops, not of model loading (int8 build, graph edits)
    print(f"[{device}] provider {provider}, RSS {rss_loaded:.0f} MB after loading", file=sys.stderr)
    e2e = end_to_end(engine, images, args.chunk, work / f"{device}_e2e.jsonl")
    print(
        f"[{device}] end to end: {e2e['images_per_s']:.3f} images/s ({e2e['images']} images)", file=sys.stderr
    )
    stages, crops = staged(engine, images, args.chunk, work / f"{device}_staged.jsonl")
    print(
        f"[{device}] staged: {stages['recognize_crops_per_s']:.1f} crops/s in recognition, "
        + ", ".join(f"{s} {v['ms_per_image']:.0f} ms" for s, v in stages["stages"].items()),
        file=sys.stderr,
    )
    peak = peak_rss_mb()
    del engine
    gc.collect()
    sample = crops
    if args.sweep_crops and crops:  # repeat the photos' crops when they are few: big batches need many
        sample = (crops * -(-args.sweep_crops // len(crops)))[: args.sweep_crops]
    default_batch = EngineConfig().recognizer.batch_size
    sizes = sorted({*args.batch_sizes, 1, default_batch})
    sweep = batch_sweep(device, sample, sizes) if sample else []
    by_size = {r["batch_size"]: r["crops_per_s"] for r in sweep}
    speedup = round(by_size[default_batch] / by_size[1], 2) if by_size.get(1) else None
    if speedup:
        print(
            f"[{device}] batched (rec_batch_size={default_batch}) vs one call per box: {speedup:.2f}× "
            f"({by_size[default_batch]:.1f} vs {by_size[1]:.1f} crops/s)",
            file=sys.stderr,
        )
    return {
        "device": device,
        "provider": provider,
        "end_to_end": e2e,
        "staged": stages,
        "batch_sweep": sweep,
        "default_batch_size": default_batch,
        "batched_vs_per_box": speedup,
        "rss_after_load_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(peak, 1),
    }


def memory_soak(
    images: list[Path], total: int, every: int, chunk: int, device: str, scale: float = 1.0
) -> dict:
    """One shard of `total` images through the real shard path (`process_shard`); RSS every `every` images.

    The photos are repeated (hard links, optionally downscaled by `scale`) as `total` distinct files in a
    temp folder: one manifest, one shard, the same code path as an Airflow task.
    Flat means the last reading is within 10% of the one at the first checkpoint (the first checkpoint,
    not start-up, because ONNX Runtime's arenas and plan caches grow to their working size at first).
    """
    import logging
    import re
    import tempfile

    from wildocr.pipeline import fused, run

    engine = make_engine(device)
    points: list[dict] = []
    start = time.perf_counter()

    class Progress(logging.Handler):
        """`process_shard` logs 'shard S: done/total images read' after each chunk: sample RSS there."""

        next_mark = every

        def emit(self, record: logging.LogRecord) -> None:
            match = re.search(r"(\d+)/\d+ images read", record.getMessage())
            if match and int(match.group(1)) >= self.next_mark:
                done = int(match.group(1))
                points.append(
                    {
                        "images": done,
                        "rss_mb": round(rss_mb(), 1),
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                )
                print(f"  soak {done:>7} images: RSS {points[-1]['rss_mb']:.1f} MB", file=sys.stderr)
                self.next_mark += every

    with tempfile.TemporaryDirectory(prefix="wildocr-soak-") as tmp:
        photos = Path(tmp, "photos")
        photos.mkdir()
        sources = []
        for k, path in enumerate(images):
            image = decode_file(path)
            small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            target = Path(tmp, f"src_{k}.jpg")
            cv2.imwrite(str(target), small)
            sources.append(target)
        for n in range(total):
            os.link(sources[n % len(sources)], photos / f"img_{n:06d}.jpg")
        root, dt, run_id = str(Path(tmp, "ocr")), "2026-01-01", "soak"
        staging = run.staging_root(root, dt, run_id)
        manifest = run.manifest_url(staging)
        run.build_manifest(str(photos), manifest, shard_size=total, dt=dt)
        handler = Progress()
        shard_log = logging.getLogger(fused.__name__)
        shard_log.addHandler(handler)
        shard_log.setLevel(logging.INFO)
        reset_peak_rss()
        points.append({"images": 0, "rss_mb": round(rss_mb(), 1), "seconds": 0.0})
        try:
            summary = fused.process_shard(
                manifest, 0, output_root=root, dt=dt, run_id=run_id, engine=engine, chunk_size=chunk
            )
        finally:
            shard_log.removeHandler(handler)
        if points[-1]["images"] != total:  # the end of the shard, when `every` does not divide `total`
            points.append(
                {
                    "images": total,
                    "rss_mb": round(rss_mb(), 1),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
        run.remove_staging(staging)
    first, last = points[1]["rss_mb"], points[-1]["rss_mb"]
    growth = (last - first) / first if first else 0.0
    return {
        "device": device,
        "images": total,
        "images_ok": summary.ok,
        "words": summary.words,
        "distinct_photos": len(images),
        "scale": scale,
        "every": every,
        "points": points,
        "rss_first_checkpoint_mb": first,
        "rss_end_mb": last,
        "growth": round(growth, 4),
        "flat_within_10pct": abs(growth) <= 0.10,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "seconds": round(time.perf_counter() - start, 1),
    }


# -- whole processes, as a user meets them -------------------------------------------------------------
def wildocr_command() -> list[str]:
    """The installed `wildocr` script beside this Python (what a user runs), else `python -m wildocr.cli`."""
    script = Path(sys.executable).parent / "wildocr"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "wildocr.cli"]


def parse_variant(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """'LABEL=ARGS': extra `wildocr ocr` arguments; ARGS tokens like NAME=VALUE (upper case) are env vars."""
    label, _, rest = spec.partition("=")
    args, env = [], {}
    for token in shlex.split(rest):
        name, eq, value = token.partition("=")
        if eq and name.isupper() and not name.startswith("-"):
            env[name] = value
        else:
            args.append(token)
    return label.strip() or "wildocr", args, env


def whole_process(folder: Path, pairs: int, variants: list[str], work: Path, peer: Path | None) -> dict:
    """Alternating pairs of whole processes on the photos in `folder`; medians per side."""
    photos = list_images(folder)
    sides: list[tuple[str, list[str], dict[str, str]]] = []
    displays: dict[str, str] = {}  # the commands as the docs show them (FILES for the photo paths)
    for spec in variants or ["wildocr="]:
        label, extra, env = parse_variant(spec)
        tail = ["--out", str(work / f"{label}.jsonl"), *extra]
        sides.append((label, [*wildocr_command(), "ocr", *map(str, photos), *tail], env))
        displays[label] = shlex.join(["wildocr", "ocr", "FILES", "--out", "X.jsonl", *extra])
    if peer is not None:
        sides.append(
            ("stock", [sys.executable, str(peer), str(folder), str(work / "stock.jsonl"), "--words"], {})
        )
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in sides}
    for k in range(pairs):
        order = sides if k % 2 == 0 else sides[::-1]  # alternate who goes first
        for label, cmd, env in order:
            run = measure_process(cmd, env={**os.environ, **env})
            if run.returncode != 0:
                raise RuntimeError(
                    f"{label} failed ({run.returncode}): {shlex.join(cmd[:4])} ...\n{run.stderr[-3000:]}"
                )
            words = sum(
                len(json.loads(line).get("words", []))
                for line in (work / f"{label}.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()
            )
            runs[label].append(
                {
                    "wall_s": round(run.wall_s, 2),
                    "cpu_s": round(run.cpu_s, 2),
                    "peak_rss_mb": round(run.peak_rss_mb, 1),
                    "words": words,
                }
            )
            print(
                f"  pair {k + 1}/{pairs} {label:>10}: {run.wall_s:6.1f} s wall, {run.cpu_s:6.1f} s CPU, "
                f"{run.peak_rss_mb:6.0f} MB peak RSS, {words} words",
                file=sys.stderr,
            )
    medians = {
        label: {
            key: round(statistics.median(r[key] for r in rs), 2)
            for key in ("wall_s", "cpu_s", "peak_rss_mb", "words")
        }
        for label, rs in runs.items()
    }
    for m in medians.values():
        m["images_per_s"] = round(len(photos) / m["wall_s"], 3)
        m["cpu_s_per_image"] = round(m["cpu_s"] / len(photos), 3)
    return {
        "images": len(photos),
        "pairs": pairs,
        "commands": {label: display for label, display in displays.items()},
        "env": {label: env for label, _, env in sides if env},
        "runs": runs,
        "medians": medians,
    }


def whole_process_table(result: dict) -> str:
    """Medians per side; ratio rows compare each wildocr variant with the stock pipeline."""
    med = result["medians"]
    rows = [
        [
            label,
            f"{m['wall_s']:.1f}",
            f"{m['cpu_s']:.1f}",
            f"{m['peak_rss_mb']:,.0f} MB",
            f"{m['images_per_s']:.2f}",
            str(int(m["words"])),
        ]
        for label, m in med.items()
    ]
    stock = med.get("stock")
    if stock:
        for label, m in med.items():
            if label == "stock":
                continue
            rows.append(
                [
                    f"ratio stock / {label}" if len(med) > 2 else "ratio (stock / wildocr)",
                    f"**{stock['wall_s'] / m['wall_s']:.2f}×**",
                    f"**{stock['cpu_s'] / m['cpu_s']:.2f}×**",
                    f"{m['peak_rss_mb'] / stock['peak_rss_mb']:.2f}× the stock's",
                    "",
                    "",
                ]
            )
    return markdown_table(["", "wall s", "CPU s", "peak RSS", "images/s", "words"], rows)


def whole_process_body(argv: list[str], result: dict, source: str) -> str:
    lines = [*header_lines(argv), "", f"Photos: {result['images']} {source}.", ""]
    lines.append(whole_process_table(result))
    lines += [
        "",
        f"Medians of {result['pairs']} alternating pairs of whole processes (model loading included). "
        "Commands:",
        "",
    ]
    for label, cmd in result["commands"].items():
        env = " ".join(f"{k}={v}" for k, v in result.get("env", {}).get(label, {}).items())
        lines.append(f"- {label}: `{(env + ' ') if env else ''}{cmd}`")
    lines += ["", "CPU s is the child's user + system time and peak RSS its ru_maxrss (both from os.wait4)."]
    return "\n".join(lines)


# -- one Airflow-like task per process: its peak RSS ------------------------------------------------------
_TASK = """
import sys
from wildocr.pipeline import fused, staged
from wildocr.pipeline.options import shared_engine
stage, manifest, staging, root = sys.argv[1:5]
engine = shared_engine()  # lazy, as the operators build it: each stage loads only its models
if stage == "fused":
    fused.process_shard(manifest, 0, output_root=root, dt="2026-01-01", run_id="t", engine=engine.load())
elif stage == "detect":
    staged.detect_shard(manifest, 0, staging_root=staging, engine=engine.load("detect"))
elif stage == "crop":
    staged.crop_shard(manifest, 0, staging_root=staging, engine=engine)
elif stage == "recognize":
    staged.recognize_shard(manifest, 0, staging_root=staging, engine=engine.load("recognize"))
else:
    staged.publish_shard(
        manifest, 0, staging_root=staging, output_root=root, dt="2026-01-01", run_id="t", engine=engine
    )
"""


def task_memory(folder: Path, work: Path) -> dict:
    """Each shard task (fused; staged detect, crop, recognize, publish) in a fresh process, as a Celery
    task runner runs it: wall, CPU and peak RSS (os.wait4) of each, over one shard of the photos."""
    from wildocr.pipeline import run as pipeline_run

    root = str(work / "ocr")
    staging = pipeline_run.staging_root(root, "2026-01-01", "t")
    manifest = pipeline_run.manifest_url(staging)
    photos = len(list_images(folder))
    pipeline_run.build_manifest(str(folder), manifest, shard_size=photos, dt="2026-01-01")
    rows = {}
    for stage in ("detect", "crop", "recognize", "publish", "fused"):
        run = measure_process([sys.executable, "-c", _TASK, stage, manifest, staging, root])
        if run.returncode != 0:
            raise RuntimeError(f"task {stage} failed: {run.stderr[-3000:]}")
        rows[stage] = {
            "wall_s": round(run.wall_s, 1),
            "cpu_s": round(run.cpu_s, 1),
            "peak_rss_mb": round(run.peak_rss_mb, 1),
        }
        print(
            f"  task {stage:>9}: {run.peak_rss_mb:6.0f} MB peak RSS, {run.cpu_s:6.1f} s CPU", file=sys.stderr
        )
    return {"photos": photos, "tasks": rows}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = results["devices"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for dev in devices:
        sweep = dev["batch_sweep"]
        if sweep:
            ax1.plot(
                [r["batch_size"] for r in sweep],
                [r["crops_per_s"] for r in sweep],
                marker="o",
                label=dev["device"],
            )
    ax1.set_xscale("log", base=2)
    ax1.set_ylim(bottom=0)
    ax1.set_xlabel("recogniser batch size (rec_batch_size)")
    ax1.set_ylabel("crops/s (recognition alone)")
    ax1.set_title("Recognition throughput vs batch size")
    ax1.grid(True, alpha=0.3)
    ax1.legend()
    bottom = np.zeros(len(devices))
    for stage in STAGES:
        values = np.array([d["staged"]["stages"][stage]["ms_per_image"] for d in devices])
        ax2.bar([d["device"] for d in devices], values, bottom=bottom, label=stage)
        bottom += values
    ax2.set_ylabel("ms per image")
    ax2.set_title("Where an image's time goes")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def docs_body(argv: list[str], results: dict, plot_path: Path | None) -> str:
    peer = results.get("peer")
    peer_ips = peer["images_per_s"] if peer else 0.0
    lines = [*header_lines(argv), "", f"Images: {results['images']} {results['source']}.", ""]
    peer_cpu = peer["cpu_seconds"] / peer["images"] if peer and peer.get("images") else 0.0
    rows = []
    for d in results["devices"]:
        ips, cpu = d["end_to_end"]["images_per_s"], d["end_to_end"]["cpu_seconds_per_image"]
        rows.append(
            [
                d["device"],
                f"{ips:.3f}",
                f"{peer_ips:.3f}" if peer else "–",
                f"{ips / peer_ips:.2f}×" if peer_ips else "–",
                f"{cpu:.2f} / {peer_cpu:.2f} ({peer_cpu / cpu:.2f}×)" if peer_cpu and cpu else f"{cpu:.2f}",
                f"{d['staged']['recognize_crops_per_s']:.1f}",
                f"{d['batched_vs_per_box']:.2f}×" if d["batched_vs_per_box"] else "–",
                f"{d['rss_after_load_mb']:.0f} / {d['peak_rss_mb']:.0f}",
            ]
        )
    lines.append(
        markdown_table(
            [
                "device",
                "wildocr images/s",
                "peer images/s",
                "ratio (wall)",
                "CPU s/image: wildocr / peer (ratio)",
                "recognition crops/s",
                f"batched ({results['devices'][0]['default_batch_size']}) vs per-box",
                "RSS MB: after load / peak in the loops",
            ],
            rows,
        )
    )
    lines += ["", "Stage times (wall ms per image, CPU ms of all threads, share of the staged loop):", ""]

    def cell(stage: dict) -> str:
        cpu = f", {stage['cpu_ms_per_image']:.0f} CPU" if "cpu_ms_per_image" in stage else ""
        return f"{stage['ms_per_image']:.0f}{cpu} ({100 * stage['share']:.0f}%)"

    stage_rows = [
        [d["device"], *(cell(d["staged"]["stages"][s]) for s in STAGES)] for d in results["devices"]
    ]
    lines.append(markdown_table(["device", *STAGES], stage_rows))
    sizes = sorted({r["batch_size"] for d in results["devices"] for r in d["batch_sweep"]})
    if sizes:
        lines += ["", "Recognition alone (no orientation classifier), crops/s by batch size:", ""]
        lines.append(
            markdown_table(
                ["batch size", *(d["device"] for d in results["devices"])],
                [
                    [
                        str(s),
                        *(
                            next(
                                (f"{r['crops_per_s']:.1f}" for r in d["batch_sweep"] if r["batch_size"] == s),
                                "–",
                            )
                            for d in results["devices"]
                        ),
                    ]
                    for s in sizes
                ],
            )
        )
    if plot_path:
        try:
            rel = plot_path.resolve().relative_to(DOC.parent.resolve())
            lines += ["", f"![crops/s vs batch size]({rel.as_posix()})"]
        except ValueError:
            lines += ["", f"Plot: `{plot_path}` (not under docs/)."]
    lines += [
        "",
        "End to end: decode + `engine.read` (chunks of "
        f"{results['chunk']} images) + JSON lines, model loading excluded, no warm-up (like the peer, "
        "which times imread + its per-image pipeline; its CPU time includes its model loading). CPU time "
        "moves less than wall time with the neighbours' load on a shared machine. The staged loop runs "
        "after the end-to-end one, warm, one image and one stage at a time (engine.read may overlap "
        "images on several workers, so its images/s can beat the sum of the stages).",
    ]
    return "\n".join(lines)


def soak_body(argv: list[str], soak: dict) -> str:
    lines = [*header_lines(argv), ""]
    lines.append(
        markdown_table(
            ["images", "RSS MB"], [[str(p["images"]), f"{p['rss_mb']:.1f}"] for p in soak["points"]]
        )
    )
    verdict = "flat" if soak["flat_within_10pct"] else "NOT flat"
    lines += [
        "",
        f"{soak['images']} images ({soak['distinct_photos']} distinct photos repeated) on "
        f"{soak['device']} in {soak['seconds']:.0f} s: RSS {soak['rss_first_checkpoint_mb']:.1f} MB at the "
        f"first checkpoint, {soak['rss_end_mb']:.1f} MB at the end ({100 * soak['growth']:+.1f}%): {verdict} "
        "within 10%.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="photos to measure (default 60 whole-process, 30 --stages)")
    ap.add_argument("--stages", action="store_true", help="the in-process stage, batch and device view")
    ap.add_argument("--pairs", type=int, default=3, help="alternating whole-process pairs (default 3)")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="a wildocr side 'LABEL=ARGS' (extra `wildocr ocr` args; NAME=VALUE tokens are env vars); "
        "repeatable, default one plain `wildocr ocr`",
    )
    ap.add_argument(
        "--task-memory", action="store_true", help="peak RSS of each shard task, one fresh process each"
    )
    ap.add_argument("--photos", type=Path, help="whole-process photo folder (default: a temp copy)")
    ap.add_argument("--images", type=Path, help="a folder of photos (default: shared ic15, else generated)")
    ap.add_argument("--devices", default="auto", help="cpu,cuda or auto (CUDA when onnxruntime has it)")
    ap.add_argument("--chunk", type=int, default=16, help="images per engine.read call")
    ap.add_argument(
        "--batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1, 8, 16, 32, 64, 128]
    )
    ap.add_argument(
        "--sweep-crops",
        type=int,
        default=256,
        help="crops in the batch-size sweep, the photos' crops repeated or cut to this (0: as they are)",
    )
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument(
        "--memory-soak", type=int, default=0, metavar="N", help="only run the memory soak over N images"
    )
    ap.add_argument("--soak-every", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument(
        "--write-docs", action="store_true", help=f"rewrite the tables in {DOC.relative_to(REPO)}"
    )
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wildocr-throughput-"))
    if not args.stages and not args.memory_soak:
        return main_whole_process(args, argv, work)
    args.limit = args.limit or 30
    if args.images:
        folder, source = args.images, f"photos from {args.images}"
    else:
        folder, source = photo_folder(args.limit, work)
    images = list_images(folder, args.limit)
    if not images:
        print(f"no images under {folder}", file=sys.stderr)
        return 1
    devices = wanted_devices(args.devices)
    print(f"{len(images)} {source}; devices {devices}", file=sys.stderr)

    if args.memory_soak:
        soak = memory_soak(images, args.memory_soak, args.soak_every, args.chunk, devices[0])
        print(json.dumps({k: v for k, v in soak.items() if k != "points"}))
        if args.json:
            args.json.write_text(json.dumps({"argv": argv, "source": source, "memory_soak": soak}, indent=2))
        if args.write_docs:
            replace_generated_section(
                DOC,
                "memory-soak",
                "bench/throughput.py",
                soak_body(["bench/throughput.py", *argv], soak),
                "Performance",
            )
        return 0

    results: dict = {
        "argv": argv,
        "images": len(images),
        "source": source,
        "chunk": args.chunk,
        "machine": machine_info(),
        "devices": [],
    }
    for device in devices:
        results["devices"].append(measure_device(device, images, args, work))
    tool = peer_script(shared_dir())
    if not args.no_peer and tool:
        results["peer"] = run_peer(tool, folder, work / "peer.jsonl", limit=args.limit)
        print(f"[peer] {results['peer']['images_per_s']:.3f} images/s", file=sys.stderr)
    elif not args.no_peer:
        print("note: peer_rapidocr.py not found under shared/tools: no peer ratio", file=sys.stderr)

    summary = {
        "peer_images_per_s": results.get("peer", {}).get("images_per_s"),
        **{
            d["device"]: {
                "images_per_s": d["end_to_end"]["images_per_s"],
                "crops_per_s": d["staged"]["recognize_crops_per_s"],
                "batched_vs_per_box": d["batched_vs_per_box"],
                "peak_rss_mb": d["peak_rss_mb"],
            }
            for d in results["devices"]
        },
    }
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.write_docs:
        replace_generated_section(
            DOC,
            "throughput",
            "bench/throughput.py",
            docs_body(["bench/throughput.py", *argv], results, args.plot),
            "Performance",
        )
        print(f"wrote {DOC}", file=sys.stderr)
    return 0


def main_whole_process(args: argparse.Namespace, argv: list[str], work: Path) -> int:
    limit = args.limit or 60
    folder = args.images or args.photos or work / "photos"
    source = f"photos from {folder}" if args.images else bench_photos(folder, limit)
    if args.images:
        folder = work / "photos"
        folder.mkdir()
        for path in list_images(args.images, limit):
            (folder / path.name).write_bytes(path.read_bytes())
    peer = None if args.no_peer else peer_script(shared_dir())
    if peer is None and not args.no_peer:
        print(
            "note: peer_rapidocr.py not found under shared/tools: no stock pipeline to compare",
            file=sys.stderr,
        )
    if args.task_memory:
        tasks = task_memory(folder, work)
        print(json.dumps(tasks))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"argv": argv, "source": source, "task_memory": tasks}, indent=2))
        return 0
    print(f"{len(list_images(folder))} {source}; {args.pairs} alternating pairs", file=sys.stderr)
    result = whole_process(folder, args.pairs, args.variant, work, peer)
    result["source"] = source
    result["machine"] = machine_info()  # the environment travels with the figures (JSON and docs)
    print(whole_process_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"argv": argv, "whole_process": result}, indent=2))
    if args.write_docs:
        replace_generated_section(
            DOC,
            "whole-process",
            "bench/throughput.py",
            whole_process_body(["bench/throughput.py", *argv], result, source),
            "Performance",
        )
        print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
