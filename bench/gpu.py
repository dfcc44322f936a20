"""`make bench-gpu`: the GPU run, in one script, ready for a machine with an NVIDIA GPU.

    python bench/gpu.py [--photos 200] [--venv .venv-gpu] [--no-install] [--json PATH] [--no-docs]

1. Brings the photos into `.bench-photos/gpu/` (git-ignored; copied from ../shared/ic15-train's check half
   when it is there, else generated 1280x720 photos), so that the folder travels with the working tree.
2. Looks for a GPU (`nvidia-smi`). None: says so clearly (`NO GPU PRESENT`), still runs the measuring code
   on CPU over a few photos (so the script itself is known to work), writes the JSON marked `"gpu": false`
   and exits 0; docs/benchmarks.md is left alone.
3. With a GPU: creates a fresh venv (`--venv`) and installs the `gpu` extra into it (`pip install -c
   constraints.txt -e ".[gpu]"`; PIP_INDEX_URL / PIP_FIND_LINKS are honoured for offline machines), then
   re-runs itself inside that venv with `--measure`.
4. `--measure`: checks that every session of a `device="cuda"` engine really runs on
   CUDAExecutionProvider (ONNX Runtime silently falls back to CPU when the CUDA libraries do not load),
   then measures photos/s end to end (decode + engine.read + JSON, warm), crops/s of recognition alone at
   batch 32/128/256, GPU vs CPU agreement of the words on the same photos, and peak GPU memory (nvidia-smi
   polled every 50 ms, the process's own use). Writes one JSON and the table in docs/benchmarks.md.

Exit codes: 0 measured (or no GPU present, said on stdout and in the JSON); 3 a GPU is there but the gpu
extra would not install or CUDA was not really used (the reason is printed); 1 anything else.
Everything is bounded to stay under 6 minutes on one GPU (install ~2-3 min where wheels are cached).
When $OUT is set (the device machine's result folder), the JSON and docs/benchmarks.md are copied there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, bench_photos, header_lines, list_images, markdown_table, replace_generated_section

DOC = REPO / "docs" / "benchmarks.md"
PHOTOS = REPO / ".bench-photos" / "gpu"
DEFAULT_JSON = REPO / "out" / "bench" / "gpu.json"
BATCHES = (32, 128, 256)
EXIT_GPU_FAILED = 3


def gpu_present() -> tuple[bool, str]:
    """(present, description) from nvidia-smi; no nvidia-smi or no device means no GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False, "nvidia-smi not found"
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nvidia-smi failed: {exc}"
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        return False, f"nvidia-smi lists no GPU ({out.stderr.strip()[:200]})"
    return True, lines[0]


class GpuMemoryPeak:
    """Polls nvidia-smi for this process's GPU memory (falls back to the whole device's used memory)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak_mb, self._stop = interval, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> float:
        pid = str(os.getpid())
        apps = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        mine = [float(p.split(",")[1]) for p in apps.splitlines() if p.split(",")[0].strip() == pid]
        if mine:
            return sum(mine)
        used = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        return float(used[0]) if used else 0.0

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.peak_mb = max(self.peak_mb, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuMemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def install_gpu_venv(venv: Path, timeout: float) -> tuple[bool, str]:
    """A fresh venv with the `gpu` extra (onnxruntime-gpu + CUDA runtime wheels), pinned by constraints."""
    if venv.exists():
        shutil.rmtree(venv)
    started = time.perf_counter()
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", "constraints.txt", "-e", ".[gpu]"],
    ]
    for cmd in steps:
        left = timeout - (time.perf_counter() - started)
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:.0f} s: {' '.join(cmd)}"
        if proc.returncode != 0:
            return False, f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}"
    return True, f"installed in {time.perf_counter() - started:.0f} s"


def cuda_check(engine) -> dict:
    """Which provider each session of the engine really runs on."""
    sessions = {
        "detector": engine.detector.session,
        "recognizer": engine.recognizer.session,
        **({"classifier": engine.classifier.session} if engine.classifier else {}),
    }
    providers = {name: s.get_providers() for name, s in sessions.items()}
    return {
        "providers": providers,
        "all_cuda": all(p[0] == "CUDAExecutionProvider" for p in providers.values()),
    }


def read_words(engine, photos: list[Path], chunk: int) -> tuple[list[list[str]], float]:
    """Words per photo (texts, in the engine's order) and the seconds it took (decode + read + JSON)."""
    from common import decode_file

    start = time.perf_counter()
    texts: list[list[str]] = []
    for first in range(0, len(photos), chunk):
        group = photos[first : first + chunk]
        for result in engine.read([decode_file(p) for p in group]):
            json.dumps([w.to_json() for w in result.words])  # the serialising a user pays for
            texts.append([w.text for w in result.words])
    return texts, time.perf_counter() - start


def agreement(gpu: list[list[str]], cpu: list[list[str]]) -> dict:
    """Word texts per photo compared as multisets: F1 over all words, and the share of identical photos."""
    common = sum(sum((Counter(g) & Counter(c)).values()) for g, c in zip(gpu, cpu, strict=True))
    n_gpu, n_cpu = sum(map(len, gpu)), sum(map(len, cpu))
    same = sum(Counter(g) == Counter(c) for g, c in zip(gpu, cpu, strict=True))
    return {
        "photos": len(gpu),
        "words_gpu": n_gpu,
        "words_cpu": n_cpu,
        "word_f1": round(2 * common / (n_gpu + n_cpu), 4) if n_gpu + n_cpu else 1.0,
        "identical_photos": round(same / len(gpu), 4) if gpu else 1.0,
    }


def measure(device: str, photos: list[Path], agree_photos: int, chunk: int, rec_crops: int = 2048) -> dict:
    """The measurements, on `device` ('cuda' on a GPU machine; 'cpu' for the dry run elsewhere).

    `rec_crops`: crops per recognition batch-size measurement (the dry run only checks the code path).
    """
    from common import decode_file

    from wildocr.engine import EngineConfig, OCREngine

    result: dict = {"device": device, "photos": len(photos)}
    engine = OCREngine(EngineConfig(device=device))
    result["engine"] = {"provider": engine.provider, "backend": engine.backend, **engine.model_info}
    if device == "cuda":
        result["cuda_check"] = cuda_check(engine)
        if not result["cuda_check"]["all_cuda"]:
            return result
    monitor = GpuMemoryPeak() if device == "cuda" else None
    if monitor:
        monitor.__enter__()
    try:
        read_words(engine, photos[: min(len(photos), 2 * chunk)], chunk)  # warm-up: shapes, cuDNN plans
        words, seconds = read_words(engine, photos, chunk)
        result["end_to_end"] = {
            "photos": len(photos),
            "seconds": round(seconds, 3),
            "photos_per_s": round(len(photos) / seconds, 2),
            "words": sum(map(len, words)),
        }
        print(f"[{device}] end to end: {result['end_to_end']['photos_per_s']:.1f} photos/s", flush=True)
        crops = []
        for path in photos[: min(len(photos), 64)]:
            image = decode_file(path)
            crops.extend(engine.crop(image, engine.detect(image)))
        sample = (crops * -(-rec_crops // max(len(crops), 1)))[:rec_crops] if crops else []
        result["recognition"] = []
        for size in BATCHES:
            rec_engine = OCREngine(
                EngineConfig(device=device, use_orientation=False).with_options(rec_batch_size=size)
            )
            rec_engine.recognize(sample[: 2 * size])  # warm-up
            start = time.perf_counter()
            rec_engine.recognize(sample)
            seconds = time.perf_counter() - start
            result["recognition"].append(
                {"batch_size": size, "crops": len(sample), "crops_per_s": round(len(sample) / seconds, 1)}
            )
            print(
                f"[{device}] recognition batch {size}: {result['recognition'][-1]['crops_per_s']:.0f} "
                "crops/s",
                flush=True,
            )
            del rec_engine
    finally:
        if monitor:
            monitor.__exit__()
            result["peak_gpu_memory_mb"] = monitor.peak_mb
    subset = photos[:agree_photos]
    gpu_words = words[: len(subset)]
    cpu_engine = OCREngine(EngineConfig(device="cpu"))
    cpu_words, _ = read_words(cpu_engine, subset, chunk)
    result["agreement_vs_cpu"] = {**agreement(gpu_words, cpu_words), "cpu_backend": cpu_engine.backend}
    return result


def docs_body(argv: list[str], result: dict) -> str:
    e2e, agree = result["end_to_end"], result["agreement_vs_cpu"]
    rows = [
        ["GPU", result.get("gpu", "")],
        ["provider (all sessions)", "CUDA" if result["cuda_check"]["all_cuda"] else "NOT CUDA"],
        ["photos/s end to end (target ≥ 150)", f"{e2e['photos_per_s']:.1f} ({e2e['photos']} photos)"],
        *[[f"recognition crops/s at batch {r['batch_size']} (target ≥ 10,000)", f"{r['crops_per_s']:,.0f}"]
          for r in result["recognition"]],
        ["peak GPU memory", f"{result.get('peak_gpu_memory_mb', 0):,.0f} MB"],
        ["words GPU vs CPU (F1 / identical photos)",
         f"{agree['word_f1']:.4f} / {100 * agree['identical_photos']:.0f}% ({agree['photos']} photos)"],
    ]  # fmt: skip
    return "\n".join([*header_lines(argv), "", markdown_table(["", "value"], rows)])


def finish(result: dict, json_path: Path, write_docs: bool) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2))
    print(f"wrote {json_path}")
    if write_docs:
        replace_generated_section(
            DOC, "gpu", "bench/gpu.py", docs_body(["bench/gpu.py"], result), "Performance"
        )
        print(f"wrote {DOC}")
    out = os.environ.get("OUT")
    if out and Path(out).is_dir():
        shutil.copy(json_path, Path(out) / json_path.name)
        if write_docs:
            shutil.copy(DOC, Path(out) / DOC.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=200, help="photos for the end-to-end run (default 200)")
    ap.add_argument(
        "--agree", type=int, default=40, help="photos read on CPU too, for agreement (default 40)"
    )
    ap.add_argument("--chunk", type=int, default=32, help="images per engine.read call (default 32)")
    ap.add_argument("--photos-dir", type=Path, default=PHOTOS, help="where the photos go (git-ignored)")
    ap.add_argument("--venv", type=Path, default=REPO / ".venv-gpu")
    ap.add_argument("--install-timeout", type=float, default=240)
    ap.add_argument(
        "--no-install", action="store_true", help="use this Python as it is (it must have the gpu extra)"
    )
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the second stage, in the venv
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    source = bench_photos(args.photos_dir, args.photos)
    photos = list_images(args.photos_dir, args.photos)
    present, description = gpu_present()
    if not present:
        print(f"NO GPU PRESENT ({description}): nothing is measured on a GPU and docs are not touched.")
        print(f"dry run of the measuring code on CPU over {min(4, len(photos))} photos ...", flush=True)
        result = {
            "gpu": False,
            "reason": description,
            "photos_source": source,
            "dry_run_cpu": measure("cpu", photos[:4], 2, 2, rec_crops=max(BATCHES)),
        }
        finish(result, args.json, write_docs=False)
        print("NO GPU PRESENT: exit 0 (see bench/gpu.py's docstring for the exit codes)")
        return 0
    if not args.measure and not args.no_install:
        ok, message = install_gpu_venv(args.venv, args.install_timeout)
        print(f"gpu extra: {message}", flush=True)
        if not ok:
            finish({"gpu": description, "install": message}, args.json, write_docs=False)
            return EXIT_GPU_FAILED
        cmd = [
            str(args.venv / "bin" / "python"),
            __file__,
            "--measure",
            *(argv if argv is not None else sys.argv[1:]),
        ]
        return subprocess.run(cmd, cwd=REPO, check=False).returncode
    import onnxruntime as ort

    result = {"gpu": description, "photos_source": source, "ort_providers": ort.get_available_providers()}
    result.update(measure("cuda", photos, args.agree, args.chunk))
    result["seconds"] = round(time.perf_counter() - started, 1)
    if not result.get("cuda_check", {}).get("all_cuda"):
        print(f"CUDA NOT REALLY USED: {result.get('cuda_check')}")
        finish(result, args.json, write_docs=False)
        return EXIT_GPU_FAILED
    finish(result, args.json, write_docs=not args.no_docs)
    print(docs_body(["bench/gpu.py"], result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
