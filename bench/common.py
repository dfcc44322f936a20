"""Helpers shared by the benchmark scripts: the evaluation data, the peer and the scorer, docs tables.

The evaluation data (`shared/` beside the checkout) is not part of the repo; every script skips with a
clear message and exit code 0 when it is absent, so CI and fresh clones never fail on it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wildocr.pipeline.loader import chunked as chunked  # one chunking rule, the pipeline's

# The ground-truth reader training uses, and ic15_eval.py's rules (transcriptions, polygons, the
# dictionary) as training and the verifier's fit apply them (train/score.py: one home, so that the
# recognition-only score means the same thing as the end-to-end one).
from wildocr.train.data import read_icdar_gt as read_icdar_gt
from wildocr.train.score import comparable_text as clean_text  # noqa: F401 (re-export)
from wildocr.train.score import in_dictionary as in_dictionary
from wildocr.train.score import polygon as polygon
from wildocr.train.score import polygon_iou as polygon_iou

REPO = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


# -- where things are --------------------------------------------------------------------------------
def shared_dir() -> Path | None:
    """`shared/` beside the checkout (or $WILDOCR_SHARED), or None when it is not there."""
    override = os.environ.get("WILDOCR_SHARED")
    path = Path(override) if override else REPO.parent / "shared"
    return path if path.is_dir() else None


def peer_script(shared: Path | None) -> Path | None:
    path = shared / "tools" / "peer_rapidocr.py" if shared else None
    return path if path and path.is_file() else None


def eval_script(shared: Path | None) -> Path | None:
    path = shared / "tools" / "ic15_eval.py" if shared else None
    return path if path and path.is_file() else None


def list_images(folder: Path, limit: int = 0) -> list[Path]:
    """Images of a folder in the peer's order (by name length, then name: img_2 before img_10)."""
    names = sorted(
        (p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda n: (len(n), n)
    )
    if limit:
        names = names[:limit]
    return [folder / n for n in names]


def image_number(path: Path) -> int | None:
    """N of `img_N.jpg`, else None."""
    stem = path.stem
    return int(stem[4:]) if stem.startswith("img_") and stem[4:].isdigit() else None


def gt_path(gt_dir: Path, image: Path) -> Path:
    return gt_dir / f"gt_{image.stem}.txt"


# -- reading images the way the pipeline does ---------------------------------------------------------
def decode_file(path: Path) -> np.ndarray:
    """Bytes → BGR through the engine's own decoder (EXIF, pixel limit), as the pipeline reads objects."""
    from wildocr.engine import decode_image

    return decode_image(path.read_bytes())


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


# -- the peer and the scorer (subprocesses, as their README asks) ---------------------------------------
def _last_json_line(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON summary in output:\n{stdout[-2000:]}")


def run_peer(script: Path, images: Path, out: Path, *, limit: int = 0, extra: Iterable[str] = ()) -> dict:
    """RapidOCR's own per-image pipeline (`--words`); returns its summary (images, seconds, images_per_s)
    plus `cpu_seconds`: the subprocess's CPU time, model loading included (it cannot be separated)."""
    cmd = [sys.executable, str(script), str(images), str(out), "--words", *extra]
    if limit:
        cmd += ["--limit", str(limit)]
    cpu_before = cpu_seconds(children=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"peer failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    summary = _last_json_line(proc.stdout)
    summary["cpu_seconds"] = round(cpu_seconds(children=True) - cpu_before, 2)
    return summary


def run_eval(script: Path, pred: Path, gt_dir: Path, *, only_predicted: bool) -> dict:
    """ic15_eval.py's summary: {"images": n, "det": {precision, recall, hmean}, "e2e": {...}}."""
    cmd = [sys.executable, str(script), str(pred), str(gt_dir)]
    if only_predicted:
        cmd.append("--only-predicted")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scorer failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return _last_json_line(proc.stdout)


# -- machine, memory, time --------------------------------------------------------------------------
CPU_FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
)
# Variables that change how many threads the libraries start or which kernels they pick.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "MKL_NUM_THREADS",
    "MKL_ENABLE_INSTRUCTIONS",
    "ORT_DISABLE_AVX512",
)
LIBRARIES = ("onnxruntime", "numpy", "opencv-python-headless", "opencv-python", "rapidocr", "pillow")


def cpu_description() -> dict:
    """What /proc/cpuinfo says of the first processor: name, family/model/stepping, clock, flags.

    The speed ratio against the stock pipeline moves with the processor (ONNX Runtime picks AVX2, AVX-512
    or VNNI kernels for fp32 and int8), so every figure is written with this.
    """
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                if fields:
                    break  # the first processor is enough: these machines are not heterogeneous
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {
        "model_name": fields.get("model name") or platform.processor() or platform.machine(),
        "vendor": fields.get("vendor_id", ""),
        "family": fields.get("cpu family", ""),
        "model": fields.get("model", ""),
        "stepping": fields.get("stepping", ""),
        "mhz": fields.get("cpu MHz", ""),
        "flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
    }


def cpu_model() -> str:
    return str(cpu_description()["model_name"])


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries the figures depend on (package metadata: nothing imported)."""
    from importlib import metadata

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def engine_threads() -> dict:
    """How the engine splits the cores by default (workers, threads per call) on this machine."""
    from wildocr.engine import EngineConfig
    from wildocr.engine.predictor import thread_plan

    return thread_plan(EngineConfig(), on_gpu=False)


def machine_info() -> dict:
    """The environment a figure was measured in: processor, cores, thread settings, library versions."""
    import onnxruntime as ort

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_info": cpu_description(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "libraries": library_versions(),
        "thread_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        "engine_threads": engine_threads(),
    }


def machine_line(info: dict) -> str:
    """One line of docs for `machine_info()`."""
    cpu = info["cpu_info"]
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    env = ", ".join(f"{k}={v}" for k, v in info["thread_env"].items()) or "no thread variables set"
    threads = ", ".join(f"{k} {v}" for k, v in info["engine_threads"].items())
    return (
        f"Machine: {info['nproc']} CPUs ({cpu['model_name']}, {cpu['vendor']} family {cpu['family']} model "
        f"{cpu['model']} stepping {cpu['stepping']}, {cpu['mhz']} MHz; flags "
        f"{' '.join(cpu['flags']) or 'none of interest'}), Python {info['python']}, {libs} "
        f"({', '.join(info['ort_providers'])}); {env}; engine {threads}"
    )


def rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU time of this process (all its threads) or of its finished children.

    Wall time is what users wait for, but on a shared machine it moves with the neighbours' load; CPU time
    moves much less, so both are reported.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window (Linux >= 4.0), so that one-off load costs (the int8 detector build,
    ONNX graph rewriting) do not stand in for the steady-state peak. False where it is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS since the last reset_peak_rss() (VmHWM), else since start-up (getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


class Stopwatch:
    """Accumulates wall seconds and the process's CPU seconds (all threads) per named stage.

    CPU seconds say what a stage costs even when neighbours on a shared machine stretch its wall time.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + time.process_time() - cpu


# -- a fixed set of photos, and whole processes measured from outside -----------------------------------
CHECK_HALF_FIRST = 501  # ic15-train img_501..img_1000: the check half, never used for tuning


def bench_photos(
    dest: Path, count: int, *, first: int = CHECK_HALF_FIRST, size: tuple[int, int] = (1280, 720)
) -> str:
    """Fill `dest` with `count` photos: ic15 check-half photos when shared/ is there, else generated ones.

    The photos are copied (not linked), so the folder can travel with a working tree to another machine.
    Generated photos (wildocr.samples, seed 0) are resized to `size` (w, h), the ic15 photos' size.
    Returns a description of the source (also kept beside the folder, in DEST.source: the folder itself
    holds photos only, as the stock pipeline reads every file in it). An existing folder with `count`
    photos is kept as it is.
    """
    dest.mkdir(parents=True, exist_ok=True)
    note = dest.parent / f"{dest.name}.source"
    if len(list_images(dest)) >= count:
        return note.read_text().strip() if note.is_file() else f"photos already in {dest}"
    shared = shared_dir()
    folder = shared / "ic15-train" / "images" if shared else None
    if folder is not None and folder.is_dir():
        names = [f"img_{k}.jpg" for k in range(first, first + count)]
        if all((folder / n).is_file() for n in names):
            for name in names:
                (dest / name).write_bytes((folder / name).read_bytes())
            last = first + count - 1
            source = f"ICDAR 2015 train photos img_{first}..img_{last} (check half, shared/ic15-train)"
            note.write_text(source + "\n")
            return source
    from wildocr.samples import render_sample

    for k in range(count):
        rgb = render_sample(seed=0, index=k).rgb
        bgr = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(dest / f"img_{k + 1}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    source = f"generated street-like photos (wildocr.samples seed 0, resized to {size[0]}x{size[1]})"
    note.write_text(source + "\n")
    return source


@dataclass(frozen=True)
class ProcessRun:
    """One child process measured from outside: wall time, its own CPU time and its own peak RSS."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def measure_process(cmd: list[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Run `cmd` to completion; CPU (user + sys) and ru_maxrss come from os.wait4 of exactly that child."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        maxrss = usage.ru_maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else usage.ru_maxrss / 1024.0
        return ProcessRun(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=maxrss,
            returncode=proc.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


# -- docs -------------------------------------------------------------------------------------------
def _markers(section: str) -> tuple[str, str]:
    return f"<!-- bench:begin {section} ", f"<!-- bench:end {section} -->"


def header_lines(argv: list[str]) -> list[str]:
    """Command line, date and machine: what a reader needs to weigh the numbers below them."""
    info = machine_info()
    command = " ".join(["python", *argv])
    return [
        f"Command: `{command}`  ",
        f"Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"{machine_line(info)}; load average "
        f"{' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1 / 5 / 15 min) when written",
    ]


def replace_generated_section(doc: Path, section: str, script: str, body: str, title: str) -> None:
    """Rewrite only the text between one section's markers; prose around them (the lead's) is kept.

    A section that is not in the file yet is appended; a missing file is created with `title`.
    """
    begin, end = _markers(section)
    block = f"{begin}(generated by {script}; edit prose outside these markers) -->\n{body.rstrip()}\n{end}"
    if doc.exists():
        text = doc.read_text(encoding="utf-8")
        start, stop = text.find(begin), text.find(end)
        if start != -1 and stop > start:
            text = text[:start] + block + text[stop + len(end) :]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = f"# {title}\n\n{block}\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- tiny synthetic set (smoke tests, and a stand-in when shared/ is absent) ------------------------------
def write_synthetic_set(root: Path, count: int = 2) -> tuple[Path, Path]:
    """`count` plain images of printed words with ICDAR ground truth: root/images, root/gts."""
    images, gts = root / "images", root / "gts"
    images.mkdir(parents=True, exist_ok=True)
    gts.mkdir(parents=True, exist_ok=True)
    lines = [["HELLO", "WORLD"], ["OPEN", "CAFE"], ["EXIT", "STATION"], ["FRESH", "BREAD"]]
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 1.6, 3
    for i in range(count):
        img = np.full((360, 640, 3), 245, dtype=np.uint8)
        rows: list[str] = []
        for r, text in enumerate([*lines[i % len(lines)], "###"]):
            x, y = 60 + 40 * (r % 2), 110 + 100 * r
            shown = "ab" if text == "###" else text  # a 'don't care' scribble, small and grey
            s = 0.5 if text == "###" else scale
            (tw, th), base = cv2.getTextSize(shown, font, s, thick)
            cv2.putText(
                img, shown, (x, y), font, s, (160, 160, 160) if text == "###" else (20, 20, 20), thick
            )
            x1, y1, x2, y2 = x - 4, y - th - 6, x + tw + 4, y + base + 4
            rows.append(f"{x1},{y1},{x2},{y1},{x2},{y2},{x1},{y2},{text}")
        cv2.imwrite(str(images / f"img_{i + 1}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (gts / f"gt_img_{i + 1}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return images, gts
