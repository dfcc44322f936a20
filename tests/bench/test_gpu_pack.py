"""The offline GPU pack (bench/gpu_pack.py) and the script that unpacks it there (bench/gpu_device.sh).

No wheel is downloaded here: a small site folder stands in for the packed one, and the device script runs
with this machine's Python, where it ends in bench/gpu.py's dry run (no GPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import common  # noqa: E402
import gpu_pack  # noqa: E402


def test_every_packed_package_is_pinned() -> None:
    requirements = gpu_pack.pinned(gpu_pack.PACKAGES, REPO / "constraints.txt")
    assert [r.split("==")[0] for r in requirements] == list(gpu_pack.PACKAGES)
    assert all(r.split("==")[1] for r in requirements)
    with pytest.raises(SystemExit, match="not pinned"):
        gpu_pack.pinned(("no-such-package",), REPO / "constraints.txt")


def test_calls_stay_under_the_budget_in_order(tmp_path: Path) -> None:
    sizes = {"a": 30, "b": 30, "c": 10, "d": 45}
    items = []
    for name, kib in sizes.items():
        path = tmp_path / name
        path.write_bytes(b"x" * kib * 1024)
        items.append(path)
    calls = gpu_pack.plan_calls(items, 60 * 1024)
    assert [[p.name for p in call] for call in calls] == [["a", "b"], ["c", "d"]]
    with pytest.raises(SystemExit, match="does not fit"):
        gpu_pack.plan_calls(items, 40 * 1024)


def _packed_site(tmp_path: Path, part_bytes: int) -> Path:
    site = tmp_path / "build" / "site"
    site.mkdir(parents=True)
    (site / "packed_marker.py").write_text("PACKED = True\n")
    (site / "payload.bin").write_bytes(os.urandom(300_000))  # incompressible: several parts
    out = tmp_path / "parts"
    parts = gpu_pack.split_archive(site, out, part_bytes)
    assert len(parts) >= 3 and all(p.stat().st_size <= part_bytes for p in parts)
    return out


def _device(
    parts: Path, site: Path, tmp_path: Path, args: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_PARTS": str(parts),
        "GPU_SITE": str(site),
        "WILDOCR_SHARED": str(tmp_path / "absent"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    if args is None:
        args = ["--photos", "2", "--photos-dir", str(tmp_path / "photos")]
        args += ["--json", str(tmp_path / "gpu.json")]
    return subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_device.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_device_script_joins_checks_and_unpacks_the_parts_then_runs_the_bench(tmp_path: Path) -> None:
    parts = _packed_site(tmp_path, 128 * 1024)
    site = tmp_path / "unpacked"
    proc = _device(parts, site, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (site / "site" / "packed_marker.py").read_text() == "PACKED = True\n"
    assert (site / "site" / "payload.bin").stat().st_size == 300_000
    assert "NO GPU PRESENT" in proc.stdout  # bench/gpu.py ran to its dry run on this machine
    assert (tmp_path / "gpu.json").is_file()


def test_a_damaged_part_stops_the_device_script_before_anything_is_unpacked(tmp_path: Path) -> None:
    parts = _packed_site(tmp_path, 128 * 1024)
    first = parts / "part-00"
    first.write_bytes(b"\0" + first.read_bytes()[1:])
    site = tmp_path / "unpacked"
    proc = _device(parts, site, tmp_path)
    assert proc.returncode != 0
    assert "FAILED" in proc.stdout + proc.stderr
    assert not site.exists()


def test_packed_training_photos_are_unpacked_beside_the_site_and_train_runs_on_them(tmp_path: Path) -> None:
    parts = _packed_site(tmp_path, 128 * 1024)
    photos = tmp_path / "made" / "tune-half"
    common.write_synthetic_set(photos, 4)
    gpu_pack.split_archive(photos, parts.parent / f"{parts.name}-data", 256 * 1024, compress=False)
    site, model = tmp_path / "unpacked", tmp_path / "det-gpu"
    train = ["train", "det", "--data", str(site / "data" / "tune-half"), "--out", str(model)]
    train += ["--device", "cpu"]
    quick = ["--epochs", "1", "--steps-per-epoch", "1", "--val-fraction", "0.25", "--select-by", "loss"]
    proc = _device(parts, site, tmp_path, [*train, *quick])
    assert proc.returncode == 0, proc.stderr[-3000:]
    unpacked = sorted(p.name for p in (site / "data" / "tune-half" / "images").iterdir())
    assert unpacked == sorted(p.name for p in (photos / "images").iterdir())
    assert sorted(p.name for p in model.iterdir()) == ["det.onnx", "manifest.json"]
