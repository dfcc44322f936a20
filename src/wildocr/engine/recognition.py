"""CTC text recognition in large, shape-stable batches.

Crops are sorted by aspect ratio and padded into a few fixed width buckets: a new input shape per batch
costs a re-plan on CPU and a kernel re-tune on GPU, while padding a crop a little costs almost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from wildocr.engine.types import Reading

if TYPE_CHECKING:
    from wildocr.engine.backends import Session

REC_HEIGHT = 48
BLANK = 0
# Rows x bucket width per recognition batch on CPU: 4 crops of 160 px, 2 of 320. Recognition runs beside
# the next photos' detection in one arena, so its batch adds to the detector's peak; on 2 cores a bigger
# batch is no faster per crop (docs/benchmarks.md), and 640 instead of 2560 took 20-45 MB off a whole
# process's peak with the same words.
CPU_MAX_BATCH_WIDTH = 640


@dataclass(frozen=True)
class RecognizerConfig:
    """How crops are batched for the recogniser (`EngineConfig.recognizer`; `--option rec_KEY=VALUE`).

    Attributes:
        batch_size: crops per network call at most.
        width_buckets: widths crops are padded to (after scaling to 48 px high), so the network sees a
            few input shapes instead of one per batch; wider crops are squeezed into the last bucket.
            Steps of 32 px up to 320 pad a word a third less than (160, 320, 480, ...) did, which cuts the
            recogniser's work by about an eighth and read better end to end on both halves of IC15; no
            bucket under 160 px, because short words padded less read worse (docs/benchmarks.md).
        fixed_batch: pad every batch to `batch_size` rows, so the network only ever sees
            len(width_buckets) shapes: worth it on GPU (no re-planning, stable cuDNN kernels), wasted
            work on CPU. None = on GPU only.
        space_prob: a space goes between two characters where the space's probability reaches this at a
            step between them, though blank won the arg-max there; None = the arg-max alone. Tightly set
            words ("PREMIUMGIFTS") come out of greedy CTC with no space, the gap only a weak space.
        max_batch_width: rows x bucket width per batch at most (a wide bucket gets fewer rows):
            activations grow with both, and on CPU a bigger batch is no faster per crop
            (docs/benchmarks.md). None = 640 on CPU (`CPU_MAX_BATCH_WIDTH`) and no cap on GPU (large
            batches are what it needs); 0 = no cap.
    """

    batch_size: int = 32
    space_prob: float | None = 0.05
    width_buckets: tuple[int, ...] = (160, 192, 224, 256, 288, 320, 384, 448, 512, 640, 960, 1280)
    fixed_batch: bool | None = None
    max_batch_width: int | None = None


def bucket_width(crop_w: int, crop_h: int, buckets: Sequence[int]) -> tuple[int, int]:
    """(resized content width, bucket width) for a crop scaled to REC_HEIGHT; the last bucket caps width."""
    content = max(1, math.ceil(REC_HEIGHT * crop_w / max(crop_h, 1)))
    for bucket in buckets:
        if content <= bucket:
            return content, bucket
    return buckets[-1], buckets[-1]


def rows_per_batch(bucket: int, cfg: RecognizerConfig) -> int:
    if not cfg.max_batch_width:
        return cfg.batch_size
    return max(1, min(cfg.batch_size, cfg.max_batch_width // bucket))


def plan_batches(shapes: Sequence[tuple[int, int]], cfg: RecognizerConfig) -> list[tuple[int, list[int]]]:
    """Group crop indices (by (h, w) shape) into batches of one bucket width, at most batch_size each."""
    by_bucket: dict[int, list[tuple[float, int]]] = {}
    for index, (h, w) in enumerate(shapes):
        _, bucket = bucket_width(w, h, cfg.width_buckets)
        by_bucket.setdefault(bucket, []).append((w / max(h, 1), index))
    batches: list[tuple[int, list[int]]] = []
    for bucket in sorted(by_bucket):
        members = [i for _, i in sorted(by_bucket[bucket])]
        rows = rows_per_batch(bucket, cfg)
        for start in range(0, len(members), rows):
            batches.append((bucket, members[start : start + rows]))
    return batches


def normalise_crop(crop_bgr: np.ndarray, bucket: int, out: np.ndarray) -> float:
    """Resize one crop into `out` (3×48×bucket, pre-zeroed); returns the share of the bucket it fills."""
    h, w = crop_bgr.shape[:2]
    content, _ = bucket_width(w, h, (bucket,))
    content = min(content, bucket)
    resized = cv2.resize(crop_bgr, (content, REC_HEIGHT), interpolation=cv2.INTER_LINEAR)
    chw = resized.transpose(2, 0, 1).astype(np.float32)
    out[:, :, :content] = chw * (2.0 / 255.0) - 1.0
    return content / bucket


def weak_spaces(labels: Sequence[str], kept: np.ndarray, space: np.ndarray, threshold: float) -> list[int]:
    """Steps between two read characters where the space reaches `threshold` without winning the arg-max.

    `labels` are the read characters at the steps `kept`. A cut is made only where the pieces on both
    sides keep a letter or digit (a "$" cut off "$4.20" would be no word and be dropped), and never inside
    a run of digits (phone numbers, prices); on IC15's tune half those cuts gained nothing.
    """
    is_space = [label == " " for label in labels]
    alnum = [label.isalnum() for label in labels]
    count = len(labels)
    # alnum_after[n]: a letter or digit from n up to the next space read.
    alnum_after = [False] * count
    for n in reversed(range(count)):
        alnum_after[n] = not is_space[n] and (alnum[n] or (n + 1 < count and alnum_after[n + 1]))
    steps = []
    piece_alnum = False  # a letter or digit since the last space or cut
    for n in range(count - 1):
        piece_alnum = not is_space[n] and (piece_alnum or alnum[n])
        first, second = int(kept[n]), int(kept[n + 1])
        if second - first < 2 or not (piece_alnum and alnum_after[n + 1]):
            continue
        if labels[n].isdigit() and labels[n + 1].isdigit():
            continue
        step = first + 1 + int(np.argmax(space[first + 1 : second]))
        if space[step] >= threshold:
            steps.append(step)
            piece_alnum = False
    return steps


def ctc_greedy_decode(
    indices: np.ndarray,
    probs: np.ndarray,
    charset: Sequence[str],
    content_fraction: float = 1.0,
    space: np.ndarray | None = None,
    space_prob: float | None = None,
) -> Reading:
    """Greedy CTC: argmax per step (given), collapse repeats, drop blank; confidence = mean kept max-prob.

    With `space` (the space's probability per step) and `space_prob`, a gap between two characters whose
    strongest space step reaches `space_prob` reads as a space (that step, its probability) too.
    Character positions are the kept steps' centres as a fraction of the crop's real (unpadded) width.
    """
    indices = np.asarray(indices)
    probs = np.asarray(probs, dtype=np.float64)
    steps = len(indices)
    keep = indices != BLANK
    keep[1:] &= indices[1:] != indices[:-1]
    kept = np.flatnonzero(keep)
    if kept.size == 0:
        return Reading(text="", confidence=0.0)
    if space is not None and space_prob is not None and kept.size > 1:
        gaps = weak_spaces([charset[i] for i in indices[kept]], kept, np.asarray(space), space_prob)
        if gaps:  # copies: the caller's batch arrays stay as the network wrote them
            indices, probs = indices.copy(), probs.copy()
            indices[gaps] = len(charset) - 1  # the space: the charset's last label
            probs[gaps] = np.asarray(space)[gaps]
            kept = np.sort(np.concatenate([kept, gaps]))
    text = "".join(charset[i] for i in indices[kept])
    step_probs = probs[kept]
    scale = 1.0 / (steps * max(content_fraction, 1e-6))
    positions = tuple(float(min((k + 0.5) * scale, 1.0)) for k in kept)
    return Reading(
        text=text,
        confidence=float(step_probs.mean()),
        char_positions=positions,
        char_confidences=tuple(float(p) for p in step_probs),
    )


class TextRecognizer:
    """Batched recognition over one inference session whose outputs are (argmax index, max probability)."""

    def __init__(self, session: Session, charset: Sequence[str], cfg: RecognizerConfig) -> None:
        self.session = session
        self.charset = list(charset)
        self._input = session.get_inputs()[0].name
        on_gpu = session.get_providers()[0] == "CUDAExecutionProvider"
        if cfg.max_batch_width is None:
            cfg = replace(cfg, max_batch_width=0 if on_gpu else CPU_MAX_BATCH_WIDTH)
        self.cfg = cfg
        self.fixed_batch = on_gpu if cfg.fixed_batch is None else cfg.fixed_batch

    def run_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arg-max label, its probability, the space's probability), each (rows, steps)."""
        indices, probs, space = self.session.run(None, {self._input: batch})
        return indices, probs, space

    def _read_batch(self, bucket: int, members: list[int], crops: Sequence[np.ndarray]) -> list[Reading]:
        rows = rows_per_batch(bucket, self.cfg) if self.fixed_batch else len(members)
        batch = np.zeros((rows, 3, REC_HEIGHT, bucket), dtype=np.float32)
        fractions = [normalise_crop(crops[i], bucket, batch[j]) for j, i in enumerate(members)]
        indices, probs, space = self.run_batch(batch)
        return [
            ctc_greedy_decode(indices[j], probs[j], self.charset, fractions[j], space[j], self.cfg.space_prob)
            for j in range(len(members))
        ]

    def __call__(self, crops: Sequence[np.ndarray], map_fn: Callable = map) -> list[Reading]:
        """Read crops in bucketed batches; `map_fn` may run the batches on worker threads."""
        readings: list[Reading] = [Reading("", 0.0)] * len(crops)
        plan = plan_batches([c.shape[:2] for c in crops], self.cfg)
        for (_, members), batch_readings in zip(
            plan, map_fn(lambda p: self._read_batch(p[0], p[1], crops), plan), strict=True
        ):
            for i, reading in zip(members, batch_readings, strict=True):
                readings[i] = reading
        return readings
