"""Sample scene-text photos with exact word-level ground truth (README demo, tests, the docker seed job).

    python include/sample_data.py OUT_DIR_OR_URL --count 12 --seed 0 [--hard] [--exif] [--script Greek]
                                  [--storage-options JSON]

The generator itself lives in the package (`wildocr.samples`) so that the engine can calibrate its int8
detector on the same photos; this file is the documented entry point.
"""

from __future__ import annotations

import sys

from wildocr.samples import GROUND_TRUTH_NAME, generate, main, render_sample

__all__ = ["GROUND_TRUTH_NAME", "generate", "main", "render_sample"]

if __name__ == "__main__":
    sys.exit(main())
