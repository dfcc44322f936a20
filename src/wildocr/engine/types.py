"""Plain result types shared by every layer (no numpy in the public fields, so they serialise as-is)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]  # clockwise from the top-left: tl, tr, br, bl


@dataclass(frozen=True, slots=True)
class Detection:
    """One text region from the detector: a clockwise quadrilateral (tl, tr, br, bl) and its DB score."""

    quad: Quad
    score: float


@dataclass(frozen=True, slots=True)
class Reading:
    """The recognizer's greedy-CTC output for one crop."""

    text: str
    confidence: float
    # Per kept character: its CTC time step centre as a fraction (0..1) of the crop's text width.
    char_positions: tuple[float, ...] = ()
    char_confidences: tuple[float, ...] = ()
    flipped: bool = False  # the orientation classifier turned the crop by 180° before reading


@dataclass(frozen=True, slots=True)
class Word:
    """One word of an image: what the `words` table stores."""

    text: str
    confidence: float
    det_score: float
    line_id: int
    poly: Quad
    bbox: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max

    def to_json(self) -> dict:
        d = asdict(self)
        d["poly"] = [list(p) for p in self.poly]
        d["bbox"] = list(self.bbox)
        return d


@dataclass(slots=True)
class ImageResult:
    """Everything wildocr knows about one image: its words, or why it could not be read."""

    width: int = 0
    height: int = 0
    words: list[Word] = field(default_factory=list)
    det_seconds: float = 0.0
    rec_seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
