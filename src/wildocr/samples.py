"""Sample scene-text photos with exact word-level ground truth, for the README, tests and the seed job.

The point is pixels that behave like real photos (textured backgrounds, signs, tilt, perspective, blur,
noise, JPEG artefacts) while every word's polygon stays exact: each text line is drawn on its own layer,
and the word corners go through the same rotation and perspective matrices as the pixels.

    python include/sample_data.py OUT_DIR_OR_URL --count N --seed S [--hard] [--exif] [--script Greek]
                                  [--storage-options JSON|@FILE]

Writes `sample_0000.jpg|png ...` and `ground_truth.jsonl` under OUT through fsspec, so local folders,
`memory://` and `s3://` all work. Image `i` depends only on (seed, i, hard): a larger `--count` extends a
smaller one. Fonts come from matplotlib's wheel (DejaVu: Latin, Greek and Cyrillic); none are shipped
in the repo. `--script` picks the word list (Latin, Greek or Cyrillic signs).

With `--exif` (`generate(..., exif=True)`) the JPEGs carry camera metadata (`PhotoExif`: capture time with
or without a UTC offset, GPS position and altitude, make and model, an Orientation with the pixels stored
turned accordingly), and each ground-truth line gets an `exif` object with the values a reader must find
(`taken_at` in ISO 8601, UTC when the offset is known). Every fourth JPEG has none.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wildocr.engine.imageio import ORIENTATION_TRANSPOSE
from wildocr.pipeline.options import add_storage_arguments, parse_storage_options

GROUND_TRUTH_NAME = "ground_truth.jsonl"
CANVAS_SIZES: tuple[tuple[int, int], ...] = ((960, 720), (1280, 720), (1024, 768))  # (width, height)
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
)

# Shop-sign and street words. None is a lone letter, made only of look-alikes (I, l, 1) or holds "rn" (m).
_WORD_LIST = """
    OPEN CLOSED CAFE SALE EXIT Street Pharmacy Bakery Coffee Market Fresh Bread Pizza Hotel Books
    Station Parking Entrance Welcome Flowers Garden Kitchen Grocery Museum Library Bank Taxi Police
    Dental Repair Shoes Fashion Organic Tea Juice Burger Noodles Sushi Wine Beer Deli Bistro Tickets
    Hours Daily Menu Today Special Discount Free Delivery Service Center North South East West Avenue
    Road Square Park Bridge Tower Post Office Laundry Barber Salon Bikes Toys Music Cinema Theater
    Gallery Paint Hardware Tools Clinic Family Dinner Lunch Breakfast Natural Quality Best Price Store
    Shop Express Happy Hour Stop Slow School Zone Caution Push Pull Private Please Thank You Apples
    Oranges Tomatoes Milk Cheese Butter Eggs Honey Chocolate Lemon Mango Pepper Sugar Water Soda Pasta
    Garage Motors Travel Studio Dragon Golden Green Harbour Central Supermarket Bookshop Hostel
"""
WORDS: tuple[str, ...] = tuple(_WORD_LIST.split())
# Street words in the other scripts DejaVu covers. Greek without accents (the recogniser's charset has the
# plain letters only).
_GREEK_LIST = """
    ΚΑΦΕΣ ΦΑΡΜΑΚΕΙΟ ΑΡΤΟΠΟΙΕΙΟ ΕΞΟΔΟΣ ΣΤΑΣΗ ΤΑΒΕΡΝΑ ΨΑΡΙΑ ΛΟΥΛΟΥΔΙΑ ΓΛΥΚΑ ΠΛΑΤΕΙΑ ΟΔΟΣ ΘΑΛΑΣΣΑ
    ΞΕΝΟΔΟΧΕΙΟ ΒΙΒΛΙΑ ΠΑΙΧΝΙΔΙΑ ΦΡΟΥΤΑ ΛΑΧΑΝΙΚΑ ΣΧΟΛΕΙΟ ΓΙΑΤΡΟΣ ΤΡΑΠΕΖΑ ΑΓΟΡΑ ΚΡΑΣΙ ΜΕΛΙ ΨΩΜΙ
"""
_CYRILLIC_LIST = """
    АПТЕКА ХЛЕБ КАФЕ ВЫХОД МАГАЗИН ПРОДУКТЫ ЦВЕТЫ РЫНОК ГОСТИНИЦА КНИГИ ИГРУШКИ ФРУКТЫ ОВОЩИ ШКОЛА
    БАНК ПОЧТА ВОКЗАЛ ПЛОЩАДЬ УЛИЦА МУЗЕЙ ЧАЙ СОК ЯБЛОКИ ЖУРНАЛЫ
"""
GREEK_WORDS: tuple[str, ...] = tuple(_GREEK_LIST.split())
CYRILLIC_WORDS: tuple[str, ...] = tuple(_CYRILLIC_LIST.split())
VOCABULARIES: dict[str, tuple[str, ...]] = {"Latin": WORDS, "Greek": GREEK_WORDS, "Cyrillic": CYRILLIC_WORDS}
SIGN_COLOURS = (
    (200, 30, 35),
    (25, 60, 160),
    (20, 115, 60),
    (240, 200, 30),
    (245, 245, 240),
    (20, 20, 25),
    (70, 70, 75),
    (235, 120, 20),
    (110, 60, 30),
    (20, 120, 130),
    (130, 30, 90),
    (250, 250, 250),
)


@dataclass(frozen=True)
class Mode:
    """Difficulty knobs; `hard` keeps text legible to a person but smaller, fainter and more cluttered."""

    text_height: tuple[float, float]  # cap height in pixels
    max_angle: float  # line tilt, degrees
    min_contrast: float  # luminance difference text vs. what is behind it (0..255)
    lines: tuple[int, int]
    clutter: tuple[int, int]
    blur_sigma: tuple[float, float]
    noise_sigma: tuple[float, float]
    jpeg_quality: tuple[int, int]
    perspective: float  # corner jitter as a fraction of the image side
    lighting: float  # amplitude of the smooth illumination field
    max_behind_std: float  # luminance spread allowed behind text without a plate


NORMAL = Mode((22, 60), 8, 100, (3, 7), (3, 8), (0.3, 0.8), (1.5, 5.0), (70, 92), 0.035, 0.12, 22)
HARD = Mode((14, 24), 15, 65, (5, 10), (8, 18), (0.8, 1.25), (4.0, 8.0), (50, 75), 0.05, 0.2, 18)


@dataclass
class Sample:
    """One rendered image: RGB pixels, word ground truth and (for tests) where glyph ink landed."""

    rgb: np.ndarray  # uint8 HxWx3
    words: list[dict[str, Any]]
    ink: np.ndarray  # float32 HxW in [0, 1], text glyphs (and their outlines) only


# ---------------------------------------------------------------- fonts


@lru_cache(maxsize=1)
def font_paths() -> tuple[str, ...]:
    """The DejaVu TTFs inside matplotlib's wheel; a clear error when matplotlib or the fonts are missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError(
            "sample_data needs matplotlib (a dev dependency) for its bundled DejaVu fonts: "
            "pip install 'wildocr[dev]' or pip install matplotlib"
        ) from exc
    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    found = tuple(os.path.join(folder, f) for f in FONT_FILES if os.path.isfile(os.path.join(folder, f)))
    if not found:
        raise RuntimeError(f"no DejaVu TTF fonts found in {folder} (expected e.g. {FONT_FILES[0]})")
    return found


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=32)
def _cap_ratio(path: str) -> float:
    """Cap height per pixel of font size, so sizes can be asked for as visible text height."""
    _, top, _, bottom = _font(path, 200).getbbox("H")
    return (bottom - top) / 200.0


# ---------------------------------------------------------------- words and colours


def _luma(colour: np.ndarray | tuple[float, ...]) -> float:
    r, g, b = (float(c) for c in colour)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _number(rng: np.random.Generator) -> str:
    kind = rng.integers(0, 5)
    if kind == 0:
        return f"{rng.integers(2, 99)}.{rng.choice(['00', '50', '99', '25', '75', '95'])}"
    if kind == 1:
        return f"${rng.integers(2, 60)}.{rng.choice(['00', '50', '99', '49'])}"
    if kind == 2:
        return str(rng.integers(1985, 2027))
    if kind == 3:
        return f"{rng.choice(['20', '30', '40', '50', '60', '70'])}%"
    return f"{rng.integers(6, 10):02d}:{rng.choice(['00', '30', '45'])}"


def _line_words(rng: np.random.Generator, vocabulary: tuple[str, ...] = WORDS) -> list[str]:
    n = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.2, 0.15]))
    words = [_number(rng) if rng.random() < 0.15 else str(rng.choice(vocabulary)) for _ in range(n)]
    style = rng.random()
    if style < 0.4:
        words = [w.upper() for w in words]
    elif style < 0.5:
        words = [w.lower() for w in words]
    return words


def _contrasting(
    rng: np.random.Generator, behind: float, min_contrast: float, behind_hi: float | None = None
) -> np.ndarray:
    """A colour at least `min_contrast` darker or lighter than everything in [behind, behind_hi] (luma)."""
    lo, hi = behind, behind if behind_hi is None else behind_hi
    for _ in range(60):
        if rng.random() < 0.5:
            c = np.array(SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], float) + rng.normal(0, 12, 3)
        else:
            c = rng.uniform(0, 255, 3)
        c = np.clip(c, 0, 255)
        if _luma(c) <= lo - min_contrast or _luma(c) >= hi + min_contrast:
            return c
    return np.full(3, 0.0 if lo - min_contrast >= 0 else 255.0)


def _room_for_contrast(lo: float, hi: float, min_contrast: float) -> bool:
    return lo - min_contrast >= 0 or hi + min_contrast <= 255


# ---------------------------------------------------------------- background


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cell: float) -> np.ndarray:
    """Perlin-like value noise in [-1, 1]: a coarse random grid resized up with bicubic interpolation."""
    gw, gh = max(2, int(w / cell) + 2), max(2, int(h / cell) + 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), -1.5, 1.5)


def _background(rng: np.random.Generator, w: int, h: int, mode: Mode) -> tuple[np.ndarray, np.ndarray]:
    """Gradient + multi-octave noise + soft blobs + a fine texture + clutter, float32 RGB 0..255.

    Also returns where the clutter strokes are (uint8 mask), so bare text is never drawn across them.
    """
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * np.cos(theta) + yy * np.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]

    octaves = ((rng.uniform(150, 400), rng.uniform(10, 30)), (rng.uniform(25, 70), rng.uniform(4, 14)))
    for cell, amp in octaves:
        tint = rng.uniform(0.6, 1.0, 3)
        img += _smooth_noise(rng, w, h, cell)[..., None] * amp * tint

    blobs = np.zeros((h // 4, w // 4, 3), np.float32)
    alpha = np.zeros((h // 4, w // 4), np.float32)
    for _ in range(rng.integers(3, 10)):
        centre = (int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4)))
        axes = (int(rng.integers(10, w // 10)), int(rng.integers(10, h // 10)))
        colour = rng.uniform(0, 255, 3)
        cv2.ellipse(blobs, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour.tolist(), -1)
        cv2.ellipse(alpha, centre, axes, 0, 0, 360, float(rng.uniform(0.3, 0.7)), -1)
    blobs = np.asarray(cv2.resize(cv2.GaussianBlur(blobs, (0, 0), 4), (w, h), interpolation=cv2.INTER_CUBIC))
    alpha = np.asarray(cv2.resize(cv2.GaussianBlur(alpha, (0, 0), 4), (w, h), interpolation=cv2.INTER_CUBIC))
    alpha = alpha[..., None]
    img = img * (1 - alpha) + blobs * alpha

    texture = rng.integers(0, 4)
    if texture == 0:  # grain: concrete, paper
        img += cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)[..., None] * (
            rng.uniform(6, 16)
        )
    elif texture == 1:  # stripes: siding, wood, shutters
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(8, 40)
        wave = np.sin((xx * np.cos(phi) + yy * np.sin(phi)) * 2 * np.pi / period)
        img += wave[..., None] * rng.uniform(5, 18)
    elif texture == 2:  # bricks or tiles
        mortar = np.zeros((h, w), np.float32)
        row_h, brick_w = int(rng.integers(18, 50)), int(rng.integers(40, 110))
        for r, y in enumerate(range(0, h, row_h)):
            cv2.line(mortar, (0, y), (w, y), 1.0, 2)
            shift = (brick_w // 2) * (r % 2)
            for x in range(-shift, w, brick_w):
                cv2.line(mortar, (x, y), (x, min(h, y + row_h)), 1.0, 2)
        img += mortar[..., None] * rng.choice([-1, 1]) * rng.uniform(20, 45)

    clutter = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(*mode.clutter)):
        colour = rng.uniform(0, 255, 3).tolist()
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        kind = rng.integers(0, 4)
        thick = int(rng.integers(1, 6))
        if kind == 0:
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, colour, thick, cv2.LINE_AA)
            cv2.line(clutter, p1, p2, 1, thick + 4)
        elif kind == 1:
            p2 = (p1[0] + int(rng.integers(30, 300)), p1[1] + int(rng.integers(30, 250)))
            cv2.rectangle(img, p1, p2, colour, thick, cv2.LINE_AA)
            cv2.rectangle(clutter, p1, p2, 1, thick + 4)
        elif kind == 2:  # a filled panel (window, poster without words), half transparent
            p2 = (p1[0] + int(rng.integers(40, 260)), p1[1] + int(rng.integers(40, 200)))
            panel = img.copy()
            cv2.rectangle(panel, p1, p2, colour, -1)
            a = rng.uniform(0.3, 0.8)
            img = img * (1 - a) + panel * a
            cv2.rectangle(clutter, p1, p2, 1, 5)  # its inside is flat, only the edge is in the way
        else:
            radius = int(rng.integers(8, 80))
            cv2.circle(img, p1, radius, colour, thick, cv2.LINE_AA)
            cv2.circle(clutter, p1, radius, 1, thick + 4)
    return np.clip(img, 0, 255).astype(np.float32), clutter


# ---------------------------------------------------------------- text lines


@dataclass
class _Line:
    """A text line drawn (unrotated) on its own layer, then rotated: masks, footprint and word boxes."""

    fill: np.ndarray  # glyph coverage, float32 0..1
    outline: np.ndarray  # glyph + stroke coverage
    plate: np.ndarray | None  # plate coverage
    footprint: np.ndarray  # 4x2, the area this line claims (plate or padded text), layer coords
    word_boxes: list[np.ndarray]  # 4x2 each, TL TR BR BL, layer coords (pixel-edge convention)
    texts: list[str]


def _render_line(rng: np.random.Generator, words: list[str], mode: Mode, with_plate: bool) -> _Line | None:
    path = font_paths()[rng.integers(len(font_paths()))]
    cap = rng.uniform(*mode.text_height)
    size = max(8, round(cap / _cap_ratio(path)))
    font = _font(path, size)
    stroke = int(rng.integers(1, max(2, size // 14) + 1)) if (not with_plate and rng.random() < 0.2) else 0
    ascent, descent = font.getmetrics()
    space = font.getlength(" ") * rng.uniform(1.2, 1.8)
    margin = 1 + round(0.05 * cap)  # ICDAR annotators leave a pixel or two around the ink
    pad = round(cap * rng.uniform(0.35, 0.7)) + stroke + 2 if with_plate else stroke + 6
    xs = []
    x = float(pad)
    for word in words:
        xs.append(x)
        x += font.getlength(word) + space
    lw, lh = int(np.ceil(x - space + pad + size * 0.3)), ascent + descent + 2 * pad
    baseline = pad + ascent

    fill_img, outline_img = Image.new("L", (lw, lh)), Image.new("L", (lw, lh))
    boxes = []
    for word, wx in zip(words, xs, strict=True):
        one = Image.new("L", (lw, lh))
        ImageDraw.Draw(one).text((wx, baseline), word, font=font, fill=255, anchor="ls", stroke_width=stroke)
        bbox = one.getbbox()  # tight around every non-zero (ink) pixel
        if bbox is None:
            return None
        x0, y0, x1, y1 = bbox[0] - margin, bbox[1] - margin, bbox[2] + margin, bbox[3] + margin
        boxes.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
        ImageDraw.Draw(fill_img).text((wx, baseline), word, font=font, fill=255, anchor="ls")
        ImageDraw.Draw(outline_img).text(
            (wx, baseline), word, font=font, fill=255, anchor="ls", stroke_width=stroke
        )
    fill = np.asarray(fill_img, np.float32) / 255.0
    outline = np.maximum(np.asarray(outline_img, np.float32) / 255.0, fill)

    ink_x0, ink_x1 = min(b[0, 0] for b in boxes), max(b[1, 0] for b in boxes)
    ink_y0, ink_y1 = min(b[0, 1] for b in boxes), max(b[2, 1] for b in boxes)
    plate = None
    if with_plate:
        p = max(3, round(cap * rng.uniform(0.3, 0.6)))
        px0, py0 = max(0, ink_x0 - p), max(0, ink_y0 - p)
        px1, py1 = min(lw - 1, ink_x1 + p), min(lh - 1, ink_y1 + p)
        plate_img = Image.new("L", (lw, lh))
        radius = int(rng.uniform(0, 0.4) * (py1 - py0))
        ImageDraw.Draw(plate_img).rounded_rectangle((px0, py0, px1, py1), radius=radius, fill=255)
        plate = np.asarray(plate_img, np.float32) / 255.0
        footprint = np.array([[px0, py0], [px1 + 1, py0], [px1 + 1, py1 + 1], [px0, py1 + 1]], np.float64)
    else:
        m = 0.25 * cap
        x0, y0, x1, y1 = ink_x0 - m, ink_y0 - m, ink_x1 + m, ink_y1 + m
        footprint = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    return _Line(fill, outline, plate, footprint, boxes, list(words))


def _rotate(line: _Line, angle: float) -> tuple[_Line, np.ndarray]:
    """Rotate every mask of the line about its centre, growing the layer to fit; returns the 2x3 matrix."""
    h, w = line.fill.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], np.float64) @ m.T
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    m[:, 2] -= lo
    nw, nh = int(np.ceil(hi[0] - lo[0])) + 1, int(np.ceil(hi[1] - lo[1])) + 1

    def warp(mask: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(mask, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0.0)

    rotated = _Line(
        fill=warp(line.fill),
        outline=warp(line.outline),
        plate=None if line.plate is None else warp(line.plate),
        footprint=_affine(m, line.footprint),
        word_boxes=[_affine(m, b) for b in line.word_boxes],
        texts=line.texts,
    )
    return rotated, m


def _affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map pixel-edge coordinates through a matrix that OpenCV applies to pixel centres."""
    c = pts - 0.5
    return np.c_[c, np.ones(len(c))] @ m.T + 0.5


def _homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    c = np.c_[pts - 0.5, np.ones(len(pts))] @ h.T
    return c[:, :2] / c[:, 2:3] + 0.5


def _perspective(rng: np.random.Generator, w: int, h: int, amount: float) -> np.ndarray:
    """A mild camera tilt: a quad inside the canvas (corners pulled in) mapped onto the whole image.

    Pulling corners inward means every output pixel comes from real canvas pixels: no borders to fill.
    """
    jitter = rng.uniform(0, amount, (4, 2)) * np.array([w, h])
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    src += jitter * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def _over(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    img *= 1 - alpha[..., None]
    img += alpha[..., None] * colour


def _place_lines(
    rng: np.random.Generator,
    canvas: np.ndarray,
    clutter: np.ndarray,
    ink: np.ndarray,
    hom: np.ndarray,
    mode: Mode,
    vocabulary: tuple[str, ...] = WORDS,
) -> list[tuple[np.ndarray, str]]:
    """Draw lines at free spots (no overlap, inside the final frame); returns canvas-space word boxes."""
    h, w = ink.shape
    taken = np.zeros((h, w), np.uint8)
    placed: list[tuple[np.ndarray, str]] = []
    n_lines = int(rng.integers(mode.lines[0], mode.lines[1] + 1))
    drawn = 0
    for _ in range(n_lines * 4):
        if drawn == n_lines:
            break
        words = _line_words(rng, vocabulary)
        with_plate = rng.random() < 0.55
        line = _render_line(rng, words, mode, with_plate)
        if line is None:
            continue
        while line.fill.shape[1] > 0.9 * w and len(words) > 1:  # too wide for the canvas: drop words
            words = words[:-1]
            line = _render_line(rng, words, mode, with_plate)
            if line is None:
                break
        if line is None or line.fill.shape[1] > 0.9 * w:
            continue
        rot, _ = _rotate(line, float(rng.uniform(-mode.max_angle, mode.max_angle)))
        lh, lw = rot.fill.shape
        if lw >= w or lh >= h:
            continue
        for _ in range(30):
            ox, oy = int(rng.integers(0, w - lw)), int(rng.integers(0, h - lh))
            offset = np.array([ox, oy], np.float64)
            boxes = [b + offset for b in rot.word_boxes]
            final = [_homography(hom, b) for b in boxes]
            if any((f < 3).any() or (f[:, 0] > w - 3).any() or (f[:, 1] > h - 3).any() for f in final):
                continue
            claim = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(claim, np.round(rot.footprint + offset).astype(np.int32), 1)
            if (claim & taken).any():
                continue
            if rot.plate is None and _busy(canvas, clutter, claim, mode):
                continue
            # A small gap around each claim keeps neighbouring lines apart, as on real facades.
            gap = max(3, int(mode.text_height[0] * 0.3))
            np.bitwise_or(taken, cv2.dilate(claim, np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)), out=taken)
            _draw_line(rng, canvas, ink, rot, ox, oy, claim, mode)
            placed.extend((b, t) for b, t in zip(boxes, rot.texts, strict=True))
            drawn += 1
            break
    return placed


def _behind(canvas: np.ndarray, claim: np.ndarray) -> tuple[float, float, float]:
    """Luminance behind a claimed area: 10th and 90th percentiles and spread."""
    luma = canvas[claim.astype(bool)] @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = np.percentile(luma, [10, 90])
    return float(lo), float(hi), float(luma.std())


def _busy(canvas: np.ndarray, clutter: np.ndarray, claim: np.ndarray, mode: Mode) -> bool:
    """Bare text needs a calm patch behind it (no wire or frame edge through the glyphs); plates hide it."""
    if (claim & clutter).any():
        return True
    lo, hi, spread = _behind(canvas, claim)
    return spread > mode.max_behind_std or not _room_for_contrast(lo, hi, mode.min_contrast)


def _draw_line(
    rng: np.random.Generator,
    canvas: np.ndarray,
    ink: np.ndarray,
    rot: _Line,
    ox: int,
    oy: int,
    claim: np.ndarray,
    mode: Mode,
) -> None:
    """Composite a placed line; colours are chosen against what is really behind it, for contrast."""
    lh, lw = rot.fill.shape
    region = canvas[oy : oy + lh, ox : ox + lw]
    lo, hi, _ = _behind(canvas, claim)
    if rot.plate is not None:
        plate_colour = np.clip(
            np.array(SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], float) + rng.normal(0, 15, 3), 0, 255
        )
        if rng.random() < 0.4:  # a border in another colour, like a framed sign
            border = cv2.dilate(rot.plate, np.ones((5, 5), np.uint8))
            _over(region, border, _contrasting(rng, _luma(plate_colour), 40))
        _over(region, rot.plate, plate_colour)
        lo = hi = _luma(plate_colour)
    text_colour = _contrasting(rng, lo, mode.min_contrast, hi)
    if (rot.outline > rot.fill + 1e-3).any():
        _over(region, rot.outline, _contrasting(rng, _luma(text_colour), 120))
    _over(region, rot.fill, text_colour)
    ink_region = ink[oy : oy + lh, ox : ox + lw]
    np.maximum(ink_region, rot.outline, out=ink_region)


# ---------------------------------------------------------------- one image


def render_sample(
    seed: int, index: int, hard: bool = False, clean: bool = False, script: str = "Latin"
) -> Sample:
    """Render image `index` of a seed's set. `clean` skips blur, noise and lighting (tests check ink).

    `script` picks the word list (`VOCABULARIES`); other scripts draw different images than Latin.
    """
    mode = HARD if hard else NORMAL
    if script not in VOCABULARIES:
        raise ValueError(f"script must be one of {sorted(VOCABULARIES)}, got {script!r}")
    salt = [] if script == "Latin" else [sorted(VOCABULARIES).index(script) + 1]
    rng = np.random.default_rng([seed, index, int(hard), *salt])
    w, h = CANVAS_SIZES[rng.integers(len(CANVAS_SIZES))]
    canvas, clutter = _background(rng, w, h, mode)
    ink = np.zeros((h, w), np.float32)
    hom = _perspective(rng, w, h, mode.perspective)
    placed = _place_lines(rng, canvas, clutter, ink, hom, mode, VOCABULARIES[script])

    if not clean:  # uneven light: a smooth multiplicative field over the whole scene
        canvas *= 1 + mode.lighting * _smooth_noise(rng, w, h, rng.uniform(200, 500))[..., None]
    img = cv2.warpPerspective(canvas, hom, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    ink = np.asarray(cv2.warpPerspective(ink, hom, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0))
    if not clean:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*mode.blur_sigma))))
        img += np.asarray(rng.normal(0, rng.uniform(*mode.noise_sigma), img.shape), np.float32)
    rgb = np.clip(np.round(img), 0, 255).astype(np.uint8)

    words = []
    for box, text in placed:
        poly = _homography(hom, box)
        words.append({"poly": [[round(float(x), 1), round(float(y), 1)] for x, y in poly], "text": text})
    return Sample(rgb=rgb, words=words, ink=ink)


def encode(
    sample: Sample, fmt: str, rng: np.random.Generator, mode: Mode, exif: PhotoExif | None = None
) -> bytes:
    """JPEG (with a per-image quality, the main source of artefacts) or lossless PNG bytes.

    With `exif`, the pixels are stored turned so that applying its Orientation shows `sample.rgb` again.
    """
    buf = io.BytesIO()
    image = Image.fromarray(sample.rgb, "RGB")
    extra: dict[str, Any] = {}
    if exif is not None:
        image = stored_for_orientation(image, exif.orientation)
        extra["exif"] = exif.to_exif()
    if fmt == "jpg":
        image.save(buf, format="JPEG", quality=int(rng.integers(*mode.jpeg_quality)), **extra)
    else:
        image.save(buf, format="PNG", **extra)
    return buf.getvalue()


# ---------------------------------------------------------------- camera metadata (EXIF)

# Pillow's transposition for each Orientation (what a reader applies) and its inverse (what we store).
_SHOW = ORIENTATION_TRANSPOSE
_UNDO = {**_SHOW, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def stored_for_orientation(upright: Image.Image, orientation: int | None) -> Image.Image:
    """The pixels a camera stores for an upright view and an EXIF Orientation (1 or None: as is)."""
    if orientation in (None, 1):
        return upright
    return upright.transpose(_UNDO[orientation])


@dataclass(frozen=True)
class PhotoExif:
    """Camera metadata for a sample photo, written with Pillow's EXIF writer (`to_exif`)."""

    taken_at: _dt.datetime | None = None  # the camera's wall clock (naive)
    utc_offset: str | None = None  # "+01:00"; None: OffsetTimeOriginal absent
    subsec: str | None = None  # "25" = .25 s
    gps: tuple[float, float, float | None] | None = None  # lat, lon (signed degrees), altitude (m)
    make: str | None = None
    model: str | None = None
    orientation: int | None = None

    def to_exif(self) -> Image.Exif:
        from PIL.TiffImagePlugin import IFDRational

        exif = Image.Exif()
        if self.make is not None:
            exif[0x010F] = self.make
        if self.model is not None:
            exif[0x0110] = self.model
        if self.orientation is not None:
            exif[0x0112] = self.orientation
        if self.taken_at is not None:
            sub = exif.get_ifd(0x8769)
            sub[0x9003] = self.taken_at.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
            if self.utc_offset is not None:
                sub[0x9011] = self.utc_offset  # OffsetTimeOriginal
            if self.subsec is not None:
                sub[0x9291] = self.subsec  # SubSecTimeOriginal
        if self.gps is not None:
            lat, lon, alt = self.gps
            gps = exif.get_ifd(0x8825)
            gps[0] = b"\x02\x03\x00\x00"  # GPSVersionID 2.3
            gps[1], gps[2] = ("N" if lat >= 0 else "S"), _dms(abs(lat), IFDRational)
            gps[3], gps[4] = ("E" if lon >= 0 else "W"), _dms(abs(lon), IFDRational)
            if alt is not None:
                gps[5] = b"\x01" if alt < 0 else b"\x00"
                gps[6] = IFDRational(round(abs(alt) * 100), 100)
        return exif

    def expected(self) -> dict[str, Any]:
        """The `images` column values a correct reader finds in this metadata (ground truth)."""
        out: dict[str, Any] = {
            "taken_at": None,
            "taken_at_is_local": None,
            "taken_at_offset_minutes": None,
            "gps_latitude": None,
            "gps_longitude": None,
            "gps_altitude": None,
            "camera_make": self.make,
            "camera_model": self.model,
            "orientation": self.orientation,
        }
        if self.taken_at is not None:
            stamp = self.taken_at + _dt.timedelta(seconds=float(f"0.{self.subsec}") if self.subsec else 0)
            if self.utc_offset is None:
                out.update(taken_at=stamp.replace(tzinfo=_dt.UTC).isoformat(), taken_at_is_local=True)
            else:
                sign = -1 if self.utc_offset.startswith("-") else 1
                hours, minutes = self.utc_offset[1:].split(":")
                offset = sign * (int(hours) * 60 + int(minutes))
                utc = (stamp - _dt.timedelta(minutes=offset)).replace(tzinfo=_dt.UTC)
                out.update(taken_at=utc.isoformat(), taken_at_is_local=False, taken_at_offset_minutes=offset)
        if self.gps is not None:
            out.update(gps_latitude=self.gps[0], gps_longitude=self.gps[1], gps_altitude=self.gps[2])
        return out


def _dms(value: float, rational: Any) -> tuple[Any, Any, Any]:
    """Degrees, minutes and seconds as EXIF rationals (seconds to 1/10000, like phones write them)."""
    total = round(value * 3600 * 10_000)  # in 1/10000 s of arc: no float minute ever rounds up to 60
    degrees, rest = divmod(total, 3600 * 10_000)
    minutes, seconds = divmod(rest, 60 * 10_000)
    return rational(degrees, 1), rational(minutes, 1), rational(seconds, 10_000)


_CAMERAS = (("Canon", "Canon EOS R5"), ("Apple", "iPhone 15 Pro"), ("Google", "Pixel 8"), ("GoPro", "HERO12"))
_PLACES = ((48.858222, 2.294500, 35.2), (-33.856800, 151.215300, 4.0), (40.689200, -74.044500, -2.5))


def sample_exif(seed: int, index: int) -> PhotoExif | None:
    """Deterministic camera metadata for photo `index`: every fourth has none; the others cycle through
    capture time with and without a UTC offset, GPS on both hemispheres and altitudes below sea level,
    four cameras and the upright and turned orientations."""
    if index % 4 == 3:
        return None
    rng = np.random.default_rng([seed, index, 7])
    taken = _dt.datetime(2026, 11, 24, 6, 0, 0) + _dt.timedelta(seconds=int(rng.integers(0, 16 * 3600)))
    offset = (None, "+01:00", "-05:30", "+09:00")[index % 4] if index % 5 else None
    make, model = _CAMERAS[index % len(_CAMERAS)]
    place = _PLACES[index % len(_PLACES)] if index % 2 == 0 else None
    return PhotoExif(
        taken_at=taken,
        utc_offset=offset,
        subsec=("5", "25", None)[index % 3],
        gps=place,
        make=make,
        model=model,
        orientation=(1, 6, 3, 8, 1)[index % 5],
    )


# ---------------------------------------------------------------- writing


def generate(
    out_url: str,
    count: int = 12,
    seed: int = 0,
    hard: bool = False,
    storage_options: dict[str, Any] | None = None,
    exif: bool = False,
    script: str = "Latin",
) -> list[dict[str, Any]]:
    """Write `count` images and `ground_truth.jsonl` under `out_url` (any fsspec URL); return the GT lines.

    `exif`: JPEGs carry `sample_exif(seed, i)` and their GT line its `expected()` values under "exif"
    (photos written without metadata get {} there). `script`: the words' writing system (`VOCABULARIES`).
    """
    import fsspec  # only writing needs storage; rendering (also used for int8 calibration) does not

    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    options = dict(storage_options or {})
    fs, root = fsspec.core.url_to_fs(out_url, **options)
    if "file" in fs.protocol:  # object stores have no folders, and makedirs there would create buckets
        fs.makedirs(root, exist_ok=True)
    lines = []
    for i in range(count):
        sample = render_sample(seed, i, hard=hard, script=script)
        fmt = "png" if i % 3 == 2 else "jpg"
        name = f"sample_{i:04d}.{fmt}"
        meta = sample_exif(seed, i) if exif and fmt == "jpg" else None
        rng = np.random.default_rng([seed, i, int(hard), 1])
        data = encode(sample, fmt, rng, HARD if hard else NORMAL, meta)
        with fs.open(f"{root.rstrip('/')}/{name}", "wb") as f:
            f.write(data)
        line: dict[str, Any] = {"image": name, "words": sample.words}
        if exif:
            line["exif"] = meta.expected() if meta is not None else {}
        lines.append(line)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    with fs.open(f"{root.rstrip('/')}/{GROUND_TRUTH_NAME}", "wb") as f:
        f.write(text.encode("utf-8"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output folder or fsspec URL (s3://bucket/prefix, memory://x)")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hard", action="store_true", help="small, tilted, blurred, low-contrast text")
    parser.add_argument("--exif", action="store_true", help="JPEGs carry camera metadata (time, GPS, camera)")
    parser.add_argument("--script", default="Latin", choices=sorted(VOCABULARIES), help="script of the words")
    add_storage_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = parse_storage_options(args.storage_options)
    except ValueError as exc:
        parser.error(str(exc))
    lines = generate(
        args.out,
        count=args.count,
        seed=args.seed,
        hard=args.hard,
        storage_options=options,
        exif=args.exif,
        script=args.script,
    )
    n_words = sum(len(line["words"]) for line in lines)
    print(f"wrote {len(lines)} images ({n_words} words) and {GROUND_TRUTH_NAME} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
