"""The sample generator: deterministic files, exact word polygons on real ink, every output backend."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import fsspec
import numpy as np
import pytest
from shapely.geometry import Polygon

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `include` is a top-level folder beside src/, not an installed package
    sys.path.insert(0, str(REPO))

from include.sample_data import GROUND_TRUTH_NAME, generate, render_sample  # noqa: E402
from wildocr import samples as sample_data  # noqa: E402
from wildocr.engine.imageio import decode_image  # noqa: E402

COUNT = 4


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _gt(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / GROUND_TRUTH_NAME).read_text().splitlines()]


def _mask(shape: tuple[int, ...], poly: list[list[float]], grow: int = 0) -> np.ndarray:
    """Pixels whose area the polygon covers (sub-pixel vertices), optionally grown by `grow` px."""
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(np.array(poly) * 8).astype(np.int32)], 1, shift=3)
    if grow:
        m = cv2.dilate(m, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return m.astype(bool)


@pytest.fixture(scope="module")
def normal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("normal")
    generate(str(out), count=COUNT, seed=11)
    return out


@pytest.fixture(scope="module")
def hard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hard")
    generate(str(out), count=3, seed=11, hard=True)
    return out


def test_same_seed_same_bytes_other_seed_other_images(normal_dir: Path, tmp_path: Path) -> None:
    generate(str(tmp_path / "again"), count=COUNT, seed=11)
    first, again = _files(normal_dir), _files(tmp_path / "again")
    assert first.keys() == again.keys()
    for name in first:
        assert hashlib.sha256(first[name]).hexdigest() == hashlib.sha256(again[name]).hexdigest(), name

    generate(str(tmp_path / "other"), count=2, seed=12)
    other = _files(tmp_path / "other")
    assert other["sample_0000.jpg"] != first["sample_0000.jpg"]
    assert other[GROUND_TRUTH_NAME] != first[GROUND_TRUTH_NAME]


def test_smaller_count_is_a_prefix(normal_dir: Path, tmp_path: Path) -> None:
    lines = generate(str(tmp_path), count=2, seed=11)
    assert lines == _gt(normal_dir)[:2]
    assert (tmp_path / "sample_0001.jpg").read_bytes() == (normal_dir / "sample_0001.jpg").read_bytes()


def test_count_names_and_formats(normal_dir: Path) -> None:
    names = sorted(p.name for p in normal_dir.iterdir())
    images = [n for n in names if n != GROUND_TRUTH_NAME]
    assert names.count(GROUND_TRUTH_NAME) == 1
    assert images == [f"sample_{i:04d}.{'png' if i % 3 == 2 else 'jpg'}" for i in range(COUNT)]
    assert [line["image"] for line in _gt(normal_dir)] == images
    for name in images:
        data = (normal_dir / name).read_bytes()
        assert data[:3] == b"\xff\xd8\xff" if name.endswith(".jpg") else data[:8] == b"\x89PNG\r\n\x1a\n"
        img = decode_image(data)
        assert (img.shape[1], img.shape[0]) in sample_data.CANVAS_SIZES
        assert img.std() > 20  # a textured scene, not a blank page


@pytest.mark.parametrize("which", ["normal", "hard"])
def test_polygons_are_clockwise_inside_and_disjoint(which: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(f"{which}_dir")
    total = 0
    for line in _gt(folder):
        h, w = decode_image((folder / line["image"]).read_bytes()).shape[:2]
        polys = []
        for word in line["words"]:
            text, pts = word["text"], np.array(word["poly"], float)
            assert pts.shape == (4, 2)
            assert len(text) >= 2 and text == text.strip() and " " not in text
            assert (pts >= 0).all() and (pts[:, 0] <= w).all() and (pts[:, 1] <= h).all(), word
            x, y = pts[:, 0], pts[:, 1]
            shoelace = float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
            assert shoelace > 0, f"{text}: not clockwise on screen"  # y points down
            assert x[0] < x[1] and y[0] < y[3], f"{text}: does not start at the top-left corner"
            polys.append(Polygon(pts))
        for i, a in enumerate(polys):
            assert a.is_valid and a.area > 100
            for b in polys[i + 1 :]:
                assert a.intersection(b).area < 1.0, (line["image"], a.wkt, b.wkt)
        total += len(polys)
    assert total >= 3 * len(_gt(folder))


def test_hard_text_is_smaller(normal_dir: Path, hard_dir: Path) -> None:
    def heights(folder: Path) -> np.ndarray:
        polys = [np.array(w["poly"]) for line in _gt(folder) for w in line["words"]]
        return np.array([np.linalg.norm(p[3] - p[0]) for p in polys])

    normal, hard = heights(normal_dir), heights(hard_dir)
    assert np.median(hard) < 0.7 * np.median(normal)
    assert hard.max() < 45 and np.median(normal) > 30


CLEAN_CASES = [(3, 0, False), (3, 1, False), (4, 0, True), (4, 2, True)]


@pytest.mark.parametrize(("seed", "index", "hard"), CLEAN_CASES)
def test_polygons_cover_the_ink_tightly(seed: int, index: int, hard: bool) -> None:
    """Clean path: every inked pixel is inside a word polygon, and every polygon edge touches ink."""
    sample = render_sample(seed, index, hard=hard, clean=True)
    ink = sample.ink > 0.5
    assert ink.sum() > 500 and sample.words
    covered = np.zeros_like(ink)
    for word in sample.words:
        inside = _mask(ink.shape, word["poly"])
        covered |= _mask(ink.shape, word["poly"], grow=1)
        ys, xs = np.nonzero(inside & ink)
        assert len(xs) > 20, f"{word['text']}: no ink inside its polygon"
        centres, pts = np.c_[xs + 0.5, ys + 0.5], np.array(word["poly"])
        for k in range(4):
            a, b = pts[k], pts[(k + 1) % 4]
            normal = np.array([b[1] - a[1], a[0] - b[0]]) / np.linalg.norm(b - a)
            gap = float(np.abs((centres - a) @ normal).min())
            assert gap < 7, f"{word['text']}: edge {k} is {gap:.1f}px from the nearest ink"
    assert (ink & covered).sum() / ink.sum() > 0.995


def test_text_pixels_differ_from_just_outside(normal_dir: Path, hard_dir: Path) -> None:
    """On the final (blurred, noisy, compressed) files, glyphs make the inside busier than a ring outside."""
    ratios = []
    for folder in (normal_dir, hard_dir):
        for line in _gt(folder):
            grey = cv2.cvtColor(decode_image((folder / line["image"]).read_bytes()), cv2.COLOR_BGR2GRAY)
            grey = grey.astype(float)
            for word in line["words"]:
                inside = _mask(grey.shape, word["poly"])
                ring = _mask(grey.shape, word["poly"], grow=4) & ~_mask(grey.shape, word["poly"], grow=1)
                ratios.append(grey[inside].std() / max(grey[ring].std(), 1e-6))
    ratios = np.array(ratios)
    assert np.median(ratios) > 3
    assert (ratios > 1.5).mean() > 0.85


def test_memory_url_round_trip() -> None:
    url = f"memory://wildocr-test-samples/{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        lines = generate(url, count=3, seed=2)
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url, detail=False))
        assert names == [GROUND_TRUTH_NAME, "sample_0000.jpg", "sample_0001.jpg", "sample_0002.png"]
        with fsspec.open(f"{url}/{GROUND_TRUTH_NAME}", "rb") as f:
            assert [json.loads(x) for x in f.read().decode().splitlines()] == lines
        with fsspec.open(f"{url}/sample_0002.png", "rb") as f:
            assert decode_image(f.read()).ndim == 3
    finally:
        fs.rm(url, recursive=True)


def test_s3_url_on_a_moto_server() -> None:
    """The seed job's path: s3:// with an endpoint (MinIO in docker, moto's real HTTP server here)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"key": "testing", "secret": "testing", "endpoint_url": f"http://{host}:{port}"}
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
        fs.mkdir("photos")
        lines = generate("s3://photos/incoming/2026-01-01/", count=2, seed=1, storage_options=options)
        listed = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("photos/incoming/2026-01-01", refresh=True))
        assert listed == [GROUND_TRUTH_NAME, "sample_0000.jpg", "sample_0001.jpg"]
        text = fs.cat(f"photos/incoming/2026-01-01/{GROUND_TRUTH_NAME}").decode()
        assert [json.loads(x) for x in text.splitlines()] == lines
        assert decode_image(fs.cat("photos/incoming/2026-01-01/sample_0001.jpg")).ndim == 3
        with pytest.raises(FileNotFoundError):  # buckets are infrastructure: never created here
            generate("s3://no-such-bucket/x", count=1, seed=1, storage_options=options)
    finally:
        server.stop()


def test_cli_writes_the_same_as_generate(tmp_path: Path) -> None:
    out = tmp_path / "cli" / "nested"
    args = [str(out), "--count", "2", "--seed", "5", "--hard", "--storage-options", '{"auto_mkdir": true}']
    proc = subprocess.run(
        [sys.executable, "include/sample_data.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 images" in proc.stdout
    generate(str(tmp_path / "api"), count=2, seed=5, hard=True)
    assert _files(out) == _files(tmp_path / "api")  # also: no dependence on the process's hash seed


def test_cli_rejects_storage_options_that_are_not_an_object(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "include/sample_data.py", str(tmp_path), "--storage-options", "[1]"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "JSON object" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_missing_fonts_fail_with_a_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import matplotlib

    assert len(sample_data.font_paths()) >= 4  # several real fonts in the normal install
    monkeypatch.setattr(matplotlib, "get_data_path", lambda: str(tmp_path))
    sample_data.font_paths.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="no DejaVu TTF fonts found"):
            render_sample(0, 0)
    finally:
        sample_data.font_paths.cache_clear()


def test_vocabulary_avoids_ambiguous_words() -> None:
    for word in sample_data.WORDS:
        assert len(word) >= 2 and " " not in word, word
        assert set(word) - set("Il1|"), word
        assert "rn" not in word.lower(), word
