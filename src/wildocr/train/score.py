"""ICDAR 2015 scoring of words read from photos against their annotation, in one place.

The rules of the benchmark's scorer (`shared/tools/ic15_eval.py`, the RRC protocol): a detection matches
an annotated word when their polygons overlap with IoU > 0.5, one to one, the largest overlaps first; a
detection lying mostly (over half its area) on an unreadable `###` region is not counted. End to end, a
match also needs the same text once case and outer punctuation are set aside, and annotated words that
would not enter the competition's dictionary (shorter than 3, inner punctuation, non-Latin letters) are
not counted either. Training validates the detector with these rules (train/fit.py), the verifier labels
its words with them (train/verifier.py), and the benchmarks compare readings with them (bench/common.py).
Needs shapely (the `train` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wildocr.engine import OCREngine
from wildocr.train.data import Photo, WordBox, read_pixels

# ICDAR 2015's end-to-end rule: readings are compared in upper case with these stripped from both ends.
OUTER_PUNCTUATION = "'!?.:,*\"()·[]/"
MIN_IOU = 0.5


def comparable_text(text: str) -> str:
    """A reading as ICDAR 2015 compares it: outer punctuation stripped, upper case."""
    return text.strip(OUTER_PUNCTUATION).upper()


def in_dictionary(text: str) -> bool:
    """The end-to-end 'care' rule for an annotated word: 3 or more Latin letters, no inner punctuation."""
    t = text[:-2] if text[-2:] in ("'s", "'S") else text
    t = t.strip("-")
    for c in OUTER_PUNCTUATION:
        t = t.replace(c, " ")
    t = t.strip()
    if " " in t or len(t) < 3:
        return False
    return all((ch.isalpha() and ord(ch) < 0x400) or ch == "-" for ch in t)


def polygon(points: Any) -> Any:
    """A shapely polygon as ICDAR scoring builds it (a self-intersecting quad repaired with buffer(0))."""
    from shapely.geometry import Polygon

    poly = Polygon(points)
    return poly if poly.is_valid else poly.buffer(0)


def polygon_iou(a: Any, b: Any) -> float:
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return float(inter / union) if union > 0 else 0.0


def on_unreadable(poly: Any, unreadable: Sequence[Any]) -> bool:
    """Whether a found polygon is left out: no area, or over half of it on an unreadable region."""
    return bool(poly.area <= 0 or any(poly.intersection(g).area / poly.area > 0.5 for g in unreadable))


@dataclass(frozen=True)
class Tally:
    """Matched words, annotated words counted, and detections counted: summed over photos, then rated."""

    matched: int = 0
    annotated: int = 0
    detected: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.matched + other.matched, self.annotated + other.annotated, self.detected + other.detected
        )

    def rates(self) -> dict[str, float]:
        """precision, recall and hmean (0 where undefined, as the scorer reports them)."""
        p = self.matched / self.detected if self.detected else 0.0
        r = self.matched / self.annotated if self.annotated else 0.0
        h = 2 * p * r / (p + r) if p + r else 0.0
        return {"precision": round(p, 4), "recall": round(r, 4), "hmean": round(h, 4)}


def score_photo(
    read: Sequence[tuple[Sequence[Sequence[float]], str]], annotated: Sequence[WordBox], end_to_end: bool
) -> Tally:
    """One photo's words (polygon points, text) against its annotation; see the module's rules."""
    care: list[tuple[Any, str]] = []
    dont_care: list[Any] = []
    for word in annotated:
        if word.ignore or (end_to_end and not in_dictionary(word.text)):
            dont_care.append(polygon(word.quad.tolist()))
        else:
            care.append((polygon(word.quad.tolist()), word.text))
    found: list[tuple[Any, str]] = []
    for points, text in read:
        if len(points) < 3:
            continue
        poly = polygon(points)
        if on_unreadable(poly, dont_care):
            continue
        found.append((poly, text))
    pairs = sorted(
        (
            (polygon_iou(g, d), gi, di)
            for gi, (g, _) in enumerate(care)
            for di, (d, _) in enumerate(found)
            if g.intersects(d)
        ),
        reverse=True,
    )
    used_annotated: set[int] = set()
    used_found: set[int] = set()
    matched = 0
    for overlap, gi, di in pairs:
        if overlap <= MIN_IOU:
            break
        if gi in used_annotated or di in used_found:
            continue
        used_annotated.add(gi)
        used_found.add(di)
        if not end_to_end or comparable_text(care[gi][1]) == comparable_text(found[di][1]):
            matched += 1
    return Tally(matched, len(care), len(found))


def read_and_score(engine: OCREngine, photos: Sequence[Photo], batch: int = 8) -> dict[str, float]:
    """Read `photos` with `engine` as `wildocr ocr` would (the verifier's choice of words included) and
    score its words: det_* and e2e_* precision, recall and hmean, and `hmean`, the mean of the two hmeans
    (what a detector fine-tune keeps its best epoch by). Photos that cannot be decoded are skipped."""
    det, e2e = Tally(), Tally()
    for start in range(0, len(photos), batch):
        chunk = photos[start : start + batch]
        images = [read_pixels(photo.path) for photo in chunk]
        readable = [(photo, image) for photo, image in zip(chunk, images, strict=True) if image is not None]
        results = engine.read([image for _, image in readable])
        for (photo, _), result in zip(readable, results, strict=True):
            words = [(word.poly, word.text) for word in result.words]
            det += score_photo(words, photo.words, end_to_end=False)
            e2e += score_photo(words, photo.words, end_to_end=True)
    scores = {f"det_{k}": v for k, v in det.rates().items()} | {f"e2e_{k}": v for k, v in e2e.rates().items()}
    scores["hmean"] = round((scores["det_hmean"] + scores["e2e_hmean"]) / 2, 4)
    return scores
