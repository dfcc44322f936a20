"""Write (or check) the int8 detector's calibration photos, src/wildocr/engine/calibration/*.png.

    python bench/make_calibration.py           # render the 12 photos and write them (lossless PNG)
    python bench/make_calibration.py --check   # render them again and compare with the files, pixel by pixel

The engine quantises its detector from these files (engine/quantize.py) and never imports the sample
generator: changing `wildocr.samples` for tests cannot change the int8 model, and so the words read. This
script records where the files came from: generated photos of seed 20261125, images 0-11, every odd one
with the hard settings (what the engine rendered itself before the files were frozen). The photos carry
sensor noise, so they compress poorly (about 17 MB in all).

Rewriting the files changes the int8 detector's cache key (a hash of the files), so every machine builds
the new model on its next load; the words read may change, so re-run bench/accuracy.py after doing it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from wildocr.engine import quantize
from wildocr.samples import render_sample

SEED = 20261125
COUNT = 12


def renders() -> dict[str, np.ndarray]:
    """File name -> RGB pixels: image i of the seed, hard when i is odd."""
    return {
        f"{i:02d}-{'hard' if i % 2 else 'normal'}.png": render_sample(seed=SEED, index=i, hard=i % 2 == 1).rgb
        for i in range(COUNT)
    }


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the files with fresh renders")
    parser.add_argument("--out", type=Path, default=quantize.CALIBRATION_DIR, help="folder of the files")
    args = parser.parse_args(argv)
    images = renders()
    if args.check:
        names = sorted(p.name for p in args.out.glob("*.png"))
        if names != sorted(images):
            print(f"files differ: {names} != {sorted(images)}", file=sys.stderr)
            return 1
        bad = [n for n, rgb in images.items() if not np.array_equal(_read(args.out / n), rgb)]
        print("pixels differ: " + ", ".join(bad) if bad else f"{len(images)} files match the renders")
        return 1 if bad else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.png"):
        old.unlink()
    total = 0
    for name, rgb in images.items():
        Image.fromarray(rgb).save(args.out / name, "PNG", optimize=True)
        total += (args.out / name).stat().st_size
    print(f"wrote {len(images)} files, {total / 1e6:.1f} MB, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
