"""Pack `make bench-gpu` for a GPU machine that reaches no package index, in pieces small enough to carry.

    python bench/gpu_pack.py [--python 3.12] [--part-mib 40] [--photos 60] [--out .devcarry/gpu]

`bench/gpu.py` installs the `gpu` extra into a fresh venv. A lent GPU machine that can reach nothing
(the `device` tool's machines: Python 3.12 with PyTorch and its CUDA 13 libraries, numpy, OpenCV, onnx,
pyarrow, fsspec, Pillow, matplotlib; no index) cannot, and a call there carries at most 64 MiB with the
working tree, while onnxruntime-gpu alone is a 244 MiB wheel. So, here, where the index is reachable:

1. downloads the wheels that machine lacks, at the versions constraints.txt pins, for its Python
   (`PACKAGES`: onnxruntime-gpu and what the engine imports beyond the image's packages);
2. unpacks them into one site folder, archives it (tar, xz) and splits the archive into parts of
   `--part-mib` MiB (`OUT/part-00`, `part-01`, …; `OUT/SHA256SUMS`);
3. copies the photos into `.bench-photos/gpu` (check-half photos from ../shared, else generated);
4. prints the device calls: one per part (the machine keeps git-ignored files between calls while it
   stays warm), then `bash bench/gpu_device.sh` with the last part and the photos, which joins the parts,
   checks their hashes, unpacks the site, points the loader at the image's CUDA libraries and runs
   `bench/gpu.py --no-install`.

Everything written is git-ignored (`/.devcarry/`, `/.bench-photos/`). The CUDA runtime, cuBLAS and cuDNN
are not packed (gigabytes): the machine's PyTorch brings CUDA 13 builds of them, the major version
onnxruntime-gpu 1.31 is built for.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docker"))
from check_pins import read_pins  # the one reader of constraints.txt's pins (the image build's check)
from common import REPO, bench_photos, shared_dir

# What the engine and bench/gpu.py import that the GPU image lacks, or has at another version than the
# one pinned (Pillow 13 carries AVIF; pillow-heif needs it). `rapidocr` only for its ONNX weights.
PACKAGES = (
    "onnxruntime-gpu",
    "rapidocr",
    "pyclipper",
    "shapely",
    "pillow",
    "pillow-heif",
    "pypdfium2",
    "simplejpeg",
)
PLATFORMS = (
    *(f"manylinux_2_{n}_x86_64" for n in (39, 38, 35, 34, 31, 28, 27, 24, 17)),
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
DEVICE_LIMIT = 60 * 2**20  # a call's 64 MiB, less a margin for files written meanwhile
DEFAULT_OUT = REPO / ".devcarry" / "gpu"
PHOTOS = REPO / ".bench-photos" / "gpu"


def pinned(names: tuple[str, ...], constraints: Path) -> list[str]:
    """`name==version` for each name, from constraints.txt (an unpinned name is an error)."""
    pins = read_pins(str(constraints))
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"not pinned in {constraints}: {', '.join(missing)}")
    return [f"{n}=={pins[n]}" for n in names]


def platform_args(python: str) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for tag in PLATFORMS:
        args += ["--platform", tag]
    return args


def build_site(requirements: list[str], python: str, work: Path) -> Path:
    """Download the wheels for `python` and install them, without their dependencies, into one folder."""
    wheels, site = work / "wheels", work / "site"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "download", "-q", "--no-deps", *platform_args(python), "-d", str(wheels), *requirements],
        check=True,
    )
    subprocess.run(
        [
            *pip,
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-compile",
            *platform_args(python),
            "--target",
            str(site),
            *map(str, sorted(wheels.glob("*.whl"))),
        ],
        check=True,
    )
    return site


def split_archive(folder: Path, out: Path, part_bytes: int, *, compress: bool = True) -> list[Path]:
    """`folder` as one tar (xz when `compress`; photos do not shrink), cut into `part_bytes` pieces in `out`
    (old parts removed), with their hashes in `out/SHA256SUMS`. Links in `folder` are archived as files."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    archive = out.parent / f"{out.name}.tar"
    with tarfile.open(archive, "w:xz" if compress else "w", dereference=True) as tar:
        tar.add(folder, arcname=folder.name)
    parts: list[Path] = []
    with archive.open("rb") as whole:
        while chunk := whole.read(part_bytes):
            part = out / f"part-{len(parts):02d}"
            part.write_bytes(chunk)
            parts.append(part)
    archive.unlink()
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in parts]
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return parts


def pack_tune_half(out: Path, part_bytes: int) -> list[Path]:
    """The ICDAR 2015 tune half (bench/finetune.py's folder of links, resolved) in parts: training only."""
    from finetune import tune_half

    shared = shared_dir()
    if shared is None or not (shared / "ic15-train" / "gts").is_dir():
        raise SystemExit("--tune-data needs ../shared/ic15-train (or $WILDOCR_SHARED)")
    with tempfile.TemporaryDirectory() as tmp:
        return split_archive(tune_half(shared / "ic15-train", Path(tmp)), out, part_bytes, compress=False)


def size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def tree_bytes() -> int:
    """What travels with every call: the tracked files and the untracked ones git does not ignore."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((REPO / n.decode()).stat().st_size for n in names if n and (REPO / n.decode()).is_file())


def plan_calls(items: list[Path], budget: int) -> list[list[Path]]:
    """Items grouped into calls of at most `budget` bytes each, in order (at most 8 paths a call)."""
    calls: list[list[Path]] = [[]]
    used = 0
    for item in items:
        if size(item) > budget:
            raise SystemExit(f"{item} ({size(item) / 2**20:.1f} MiB) does not fit a call: lower --part-mib")
        if calls[-1] and (used + size(item) > budget or len(calls[-1]) == 8):
            calls.append([])
            used = 0
        calls[-1].append(item)
        used += size(item)
    return calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default="3.12", help="the GPU machine's Python, major.minor (default 3.12)")
    ap.add_argument("--part-mib", type=int, default=40, help="size of each part (default 40 MiB)")
    ap.add_argument("--photos", type=int, default=60, help="photos for bench/gpu.py (default 60)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the parts go (git-ignored)")
    ap.add_argument(
        "--tune-data",
        action="store_true",
        help="also pack the ICDAR 2015 tune half (img_1-img_500 with their gts, from ../shared) into "
        "OUT-data, for `bash bench/gpu_device.sh train det --data $GPU_SITE/data/tune-half ...` there",
    )
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    if not args.out.is_relative_to(REPO):
        ap.error(f"--out must be inside the checkout ({REPO}): only the working tree travels to the machine")

    requirements = pinned(PACKAGES, REPO / "constraints.txt")
    with tempfile.TemporaryDirectory() as tmp:
        site = build_site(requirements, args.python, Path(tmp))
        parts = split_archive(site, args.out, args.part_mib * 2**20)
    data_parts: list[Path] = []
    if args.tune_data:
        data_parts = pack_tune_half(args.out.parent / f"{args.out.name}-data", args.part_mib * 2**20)
    source = bench_photos(PHOTOS, args.photos)
    print(f"packed {', '.join(requirements)} for Python {args.python}")
    print(f"{len(parts)} parts of at most {args.part_mib} MiB in {args.out.relative_to(REPO)}")
    print(f"photos in {PHOTOS.relative_to(REPO)}: {source}")
    note = PHOTOS.parent / f"{PHOTOS.name}.source"
    items = [*parts, args.out / "SHA256SUMS", PHOTOS, note]
    if data_parts:
        items += [*data_parts, data_parts[0].parent / "SHA256SUMS"]
        print(f"tune half: {len(data_parts)} parts in {data_parts[0].parent.relative_to(REPO)}")
    calls = plan_calls(items, DEVICE_LIMIT - tree_bytes())
    print(f"{len(calls)} device calls, each right after the last (the machine keeps the files while warm):")
    for k, items in enumerate(calls):
        carry = ", ".join(f'"{p.relative_to(REPO)}"' for p in items)
        command = (
            f"GPU_PARTS={args.out.relative_to(REPO)} bash bench/gpu_device.sh --photos {args.photos}"
            if k == len(calls) - 1
            else f"ls -l {args.out.relative_to(REPO)}"
        )
        print(f'  run(command="{command}", carry=[{carry}])')
    if data_parts:
        print("then, on the same warm machine, a fine-tune on the GPU whose folder comes back in $OUT, e.g.:")
        print(
            f'  run(command="GPU_PARTS={args.out.relative_to(REPO)} bash bench/gpu_device.sh train det '
            "--data /tmp/wildocr-gpu-site/data/tune-half --out $OUT/det-gpu --device cuda --epochs 40 "
            '--steps-per-epoch 100 --patience 4")'
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
