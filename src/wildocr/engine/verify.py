"""Word verification: is a word real text, and is its reading right?

One threshold on the recogniser's mean character probability (the old `min_confidence = 0.7`) mixes two
different failures: boxes on things that are not text (junk that lowers detection and end-to-end
precision alike) and real words read wrong (which only the end-to-end score sees). Two small logistic
models over the same nine features of a reading tell them apart better than the mean alone: the mean
hides one unsure character in a long word, and short readings and random case changes are wrong more often
at the same mean. Both were fitted on the TUNE half of the ICDAR 2015 photos and kept because
they hold on the CHECK half (docs/benchmarks.md); `bench/fit_verifier.py` refits them and prints this file's
coefficients.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Every feature is scale-free (no pixel sizes) and none looks at what the letters are beyond their case, so
# the models carry over to photos of other sizes and to numbers, codes and prices.
FEATURES = (
    "mean_logit",  # mean over the word's characters of log(p / (1 - p)), p = CTC max-probability
    "min_logit",  # the least sure character
    "mean_probability",  # the recogniser's own word confidence
    "log_length",  # log of the number of characters
    "det_score",  # the detector's mean probability inside the line's box
    "mixed_case",  # letters neither all upper, all lower nor Title case ("GUCCi", "lON")
    "line_logit",  # the whole line's confidence, as a logit
    "mean_logit_x_log_length",  # the same certainty is stronger evidence over more characters
    "min_logit_x_log_length",
)

_EPS = 1e-4


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(q / (1.0 - q))


def _mixed_case(text: str) -> bool:
    if not any(ch.isalpha() for ch in text):
        return False
    return not (text.isupper() or text.islower() or text.istitle())


def word_features(
    text: str, char_confidences: Sequence[float] | np.ndarray, det_score: float, line_confidence: float
) -> np.ndarray:
    """The verifier's inputs for one word, in the order of FEATURES."""
    probs = np.clip(np.asarray(char_confidences, dtype=np.float64), _EPS, 1.0 - _EPS)
    if probs.size == 0:
        probs = np.array([_EPS])
    logits = _logit(probs)
    log_length = math.log(max(len(text), 1))
    return np.array(
        [
            logits.mean(),
            logits.min(),
            probs.mean(),
            log_length,
            det_score,
            float(_mixed_case(text)),
            float(_logit(line_confidence)),
            logits.mean() * log_length,
            logits.min() * log_length,
        ]
    )


@dataclass(frozen=True)
class LogisticModel:
    """P = 1 / (1 + exp(-(bias + features · weights)))."""

    weights: tuple[float, ...]
    bias: float

    def probability(self, features: np.ndarray) -> float:
        z = self.bias + float(np.dot(features, self.weights))
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def to_json(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "bias": self.bias}

    @classmethod
    def from_json(cls, obj: object, where: str) -> LogisticModel:
        """Read `{"weights": [9 numbers], "bias": number}`, or raise ValueError saying what is wrong."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where} must be an object with 'weights' and 'bias'")
        weights, bias = obj.get("weights"), obj.get("bias")
        if not isinstance(weights, list) or len(weights) != len(FEATURES):
            raise ValueError(f"{where}.weights must be a list of {len(FEATURES)} numbers (one per feature)")
        numbers = [v for v in (*weights, bias) if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) != len(FEATURES) + 1 or not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"{where}: weights and bias must be finite numbers")
        return cls(weights=tuple(float(w) for w in numbers[:-1]), bias=float(numbers[-1]))


@dataclass(frozen=True)
class Verifier:
    """The two models, used together: a word is kept when it is likely text and likely read right.

    They are fitted to one detector and recognizer's readings: a fine-tuned recognizer is surer or less
    sure than the stock one at the same error rate, so a model folder may carry its own verifier
    (`wildocr train verifier`, docs/models.md); the engine uses the stock pair otherwise.
    """

    text: LogisticModel
    reading: LogisticModel

    def probabilities(self, features: np.ndarray) -> tuple[float, float]:
        """(P(the word is text), P(its reading is right))."""
        return self.text.probability(features), self.reading.probability(features)

    def to_json(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "text": self.text.to_json(), "reading": self.reading.to_json()}

    def to_bytes(self) -> bytes:
        """The file a model folder holds (`verifier.json`)."""
        return (json.dumps(self.to_json(), indent=2) + "\n").encode()

    def sha256(self) -> str:
        """What the tables record (`images.verifier_sha256`): the hash of `to_bytes`, so a folder's verifier
        has the SHA-256 its manifest names, and the stock one a hash of its own."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_json(cls, obj: object) -> Verifier:
        """Read what `to_json` wrote, or raise ValueError: the features must be this engine's, in order."""
        if not isinstance(obj, dict):
            raise ValueError("the verifier must be a JSON object")
        if obj.get("features") != list(FEATURES):
            raise ValueError(f"the verifier's 'features' must be {list(FEATURES)} (another engine version?)")
        return cls(
            LogisticModel.from_json(obj.get("text"), "text"),
            LogisticModel.from_json(obj.get("reading"), "reading"),
        )


# Fitted by `python bench/fit_verifier.py` on the 3,733 words (mean confidence >= 0.5) that the engine
# reads in the tune half, img_1-img_500 (2,453 of them outside don't-care regions), labelled against the
# ground truth with IoU > 0.5: L2-regularised logistic regression on standardised features, folded back
# to raw features here.
# Is it text: the word's box matches an annotated word (a box on nothing, or on a fragment, is not).
TEXT_MODEL = LogisticModel(
    weights=(1.0811, -0.6077, 1.0327, 2.0908, 4.9425, -1.317, -0.0261, -0.3964, 0.3892),
    bias=-8.8175,
)
# Is the reading right: the matched word's text is the same (case and outer punctuation aside).
READING_MODEL = LogisticModel(
    weights=(0.9464, -0.3485, 6.4327, 1.582, 2.694, -1.3339, -0.0829, -0.4264, 0.3582),
    bias=-12.0032,
)


STOCK_VERIFIER = Verifier(TEXT_MODEL, READING_MODEL)
