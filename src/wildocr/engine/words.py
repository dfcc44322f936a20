"""Lines to words: the detector finds text lines, users and the `words` table want one box per word.

The CTC time steps say where along the crop each character was read, so a space in the reading marks a
cut; the cut positions map back onto the line's quadrilateral by linear interpolation along its edges.
"""

from __future__ import annotations

import unicodedata
from typing import cast

import numpy as np

from wildocr.engine.types import Detection, Quad, Reading, Word

# Read between words but part of none: a middle dot or bullet between sign words, a bar.
_SEPARATORS = frozenset("·•|¦")


def _is_symbol(ch: str) -> bool:
    """Arrows, pictographs, circled digits: marks on signs that the recogniser reads as characters."""
    code = ord(ch)
    return (
        0x2190 <= code <= 0x21FF  # arrows
        or 0x2460 <= code <= 0x24FF  # enclosed alphanumerics (①)
        or 0x27F0 <= code <= 0x27FF
        or 0x2900 <= code <= 0x297F
        or unicodedata.category(ch) == "So"
    )


def _script(ch: str) -> str | None:
    """A letter's script group: 'alphabet' (Latin, Greek, Cyrillic: the recogniser mixes their look-alike
    capitals inside one word, "ΣTAΣH") or 'other' (CJK, Arabic, ...); None for non-letters (digits,
    punctuation), which go with either."""
    if not ch.isalpha():
        return None
    return "alphabet" if ord(ch) < 0x530 else "other"


def _split_spans(reading: Reading, at_symbols: bool = True) -> list[tuple[str, int, int]]:
    """(word text, first char index, last char index) for each word of a reading.

    Words end at spaces and, with `at_symbols`, also at separators (·, •, |), which belong to no word, at
    arrows and pictographs (dropped: they are marks, not text) and where Latin text meets another script
    ("OCBC信用": two words; a misread arrow glued to a word: "个Toilet").
    """
    spans: list[tuple[str, int, int]] = []
    text = reading.text
    start, script = None, None  # the current word's first index and the script of its letters
    for i, ch in enumerate(text + " "):
        breaks = ch.isspace() or (at_symbols and (ch in _SEPARATORS or _is_symbol(ch)))
        ch_script = None if breaks else _script(ch)
        if at_symbols and start is not None and ch_script and script and ch_script != script:
            spans.append((text[start:i], start, i - 1))
            start = None
        if ch_script:
            script = ch_script
        if breaks:
            if start is not None:
                spans.append((text[start:i], start, i - 1))
            start, script = None, None
        elif start is None:
            start = i
    return spans


def _interpolate(quad: np.ndarray, left: float, right: float) -> np.ndarray:
    tl, tr, br, bl = quad
    top_l, top_r = tl + (tr - tl) * left, tl + (tr - tl) * right
    bot_l, bot_r = bl + (br - bl) * left, bl + (br - bl) * right
    return np.array([top_l, top_r, bot_r, bot_l], dtype=np.float64)


def tighten(quad: np.ndarray, height_scale: float) -> np.ndarray:
    """Scale a quad's height about its centre line: DB boxes are grown for reading, words reported tight."""
    if height_scale == 1.0:
        return quad
    top_mid = (quad[0] + quad[1]) / 2.0
    bottom_mid = (quad[3] + quad[2]) / 2.0
    shift = (bottom_mid - top_mid) * (1.0 - height_scale) / 2.0
    return np.array([quad[0] + shift, quad[1] + shift, quad[2] - shift, quad[3] - shift])


def _word(text: str, quad: np.ndarray, confidence: float, det_score: float, line_id: int) -> Word:
    poly = cast(Quad, tuple((round(float(x), 1), round(float(y), 1)) for x, y in quad))
    xs, ys = quad[:, 0], quad[:, 1]
    bbox = (
        round(float(xs.min()), 1),
        round(float(ys.min()), 1),
        round(float(xs.max()), 1),
        round(float(ys.max()), 1),
    )
    return Word(text, round(confidence, 4), round(det_score, 4), line_id, poly, bbox)


def line_words(
    detection: Detection,
    crop_quad: np.ndarray,
    reading: Reading,
    line_id: int,
    quarter_turns: int = 0,
    height_scale: float = 1.0,
    split_at_symbols: bool = True,
    trim_to_characters: bool = True,
) -> list[tuple[Word, np.ndarray]]:
    """Words of one line, each with its characters' CTC confidences (what the word verifier reads).

    `crop_quad` is the padded quad the crop was cut from (positions are relative to it); `quarter_turns`
    counts how the crop was turned before reading. A word's extent runs from its first character's step
    minus half a character pitch to its last character's step plus half a pitch, never past the midpoint
    to the neighbouring word.
    """
    spans = _split_spans(reading, split_at_symbols)
    if not spans:
        return []
    conf = (
        np.asarray(reading.char_confidences, dtype=np.float64)
        if len(reading.char_confidences) == len(reading.text)
        else np.full(len(reading.text), reading.confidence)
    )
    quad = np.asarray(crop_quad, dtype=np.float64)
    # The crop was turned `quarter_turns` × 90° counter-clockwise (tall text, upside-down text): the corner
    # that became the crop's top-left is `quarter_turns` places further round the quad.
    quad = np.roll(quad, -quarter_turns, axis=0)
    whole_line = len(spans) == 1 and spans[0][0] == reading.text.strip()  # nothing cut off either end
    if (whole_line and not trim_to_characters) or not reading.char_positions:
        if len(spans) == 1:
            text, chars = spans[0][0], conf[spans[0][1] : spans[0][2] + 1]
        else:
            text, chars = reading.text.strip(), conf
        quad = np.roll(np.asarray(detection.quad, dtype=np.float64), -quarter_turns, axis=0)
        word = _word(text, tighten(quad, height_scale), reading.confidence, detection.score, line_id)
        return [(word, chars)]
    pos = np.asarray(reading.char_positions)
    gaps = np.diff(pos)
    pitch = float(np.median(gaps)) if gaps.size else 0.05
    words: list[tuple[Word, np.ndarray]] = []
    for k, (text, first, last) in enumerate(spans):
        left = pos[first] - 0.5 * pitch
        right = pos[last] + 0.5 * pitch
        # Never past the midpoint to the neighbouring character: the previous word's last one across a
        # space, or a separator / symbol right next to the word.
        before = first - 1 if first > 0 and not reading.text[first - 1].isspace() else None
        after = last + 1 if last + 1 < len(pos) and not reading.text[last + 1].isspace() else None
        if before is not None:
            left = max(left, (pos[before] + pos[first]) / 2.0)
        elif k > 0:
            left = max(left, (pos[spans[k - 1][2]] + pos[first]) / 2.0)
        else:
            left = min(left, pos[first])
            left = max(0.0, left)
        if after is not None:
            right = min(right, (pos[last] + pos[after]) / 2.0)
        elif k < len(spans) - 1:
            right = min(right, (pos[last] + pos[spans[k + 1][1]]) / 2.0)
        else:
            right = min(1.0, right)
        chars = conf[first : last + 1]
        box = tighten(_interpolate(quad, left, right), height_scale)
        words.append((_word(text, box, float(chars.mean()), detection.score, line_id), chars))
    return words
