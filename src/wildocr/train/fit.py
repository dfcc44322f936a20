"""The training loop both roles share, and `train`: data in, a model folder out.

Fine-tuning, not training from scratch: a low learning rate, a validation split scored before the first
step (the base weights' own score) and after every epoch, the best state kept, early stopping after
`patience` epochs without gain, and a wall-clock cap (`max_minutes`). When no epoch beats the base
weights on validation, the folder carries the base weights unchanged and the manifest says so.

What "best" means is `select_by`. A detector is judged as the product is: the engine reads the held-out
photos whole with the weights being trained and they are scored as ICDAR 2015 scores them (train/score.py);
the DB map loss on training windows can fall while the photos read worse (docs/accuracy.md, det-960). A
recognizer is judged by its CTC loss on the held-out words (their word accuracy is recorded beside it).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from wildocr.engine import EngineConfig, OCREngine, backends
from wildocr.engine.detection import STOCK_LIMIT_SIDE
from wildocr.engine.models import (
    DET_MODEL,
    MAX_LIMIT_SIDE,
    MIN_LIMIT_SIDE,
    REC_MODEL,
    model_path,
    recognizer_charset,
)
from wildocr.engine.verify import STOCK_VERIFIER
from wildocr.train import det, rec
from wildocr.train.data import Photo, TrainDataError, load_dataset, split
from wildocr.train.folder import ROLE_FILES, read_base, write_model_folder
from wildocr.train.graph import OnnxModule, export, load
from wildocr.train.score import read_and_score

log = logging.getLogger(__name__)
STOCK = {"det": DET_MODEL, "rec": REC_MODEL}


@dataclass(frozen=True)
class TrainSettings:
    """What `wildocr train` takes besides the data (recorded in the manifest)."""

    epochs: int = 10
    batch_size: int = 0  # 0 = 4 photos (det), 64 crops (rec)
    lr: float = 0.0  # 0 = 1e-4 (det), 1e-5 (rec): low, the weights are already good (rec forgot at 5e-5)
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    patience: int = 2
    max_minutes: float = 0.0  # 0 = no cap
    max_steps: int = 0  # per epoch, 0 = the whole pass (tests use a few)
    crop: int = 640  # det: training window side
    limit_side: int = 0  # det: input short side to train and validate at; 0 = the base detector's own
    device: str = "auto"  # cpu | cuda | auto
    seed: int = 0
    augment: bool = False  # rec: loosen/tighten, blur, recompress and re-expose training crops
    blend_base: float = 0.0  # share of the base weights in the folder's: 0.5 = the mean of base and trained
    select_by: str = "auto"  # the validation score that keeps an epoch: SELECT_BY[role] (auto: the first)
    ema: float = 0.0  # decay of a moving average of the weights, validated and kept instead of them; 0 = off

    def resolved(self, role: str) -> TrainSettings:
        choices = SELECT_BY[role]
        if self.select_by != "auto" and self.select_by not in choices:
            raise ValueError(
                f"{role}: --select-by must be auto or one of {', '.join(choices)}, not {self.select_by!r}"
            )
        return TrainSettings(
            **{
                **asdict(self),
                "batch_size": self.batch_size or (4 if role == "det" else 64),
                "lr": self.lr or (1e-4 if role == "det" else 1e-5),
                "select_by": choices[0] if self.select_by == "auto" else self.select_by,
            }
        )


# Validation scores an epoch can be kept by, per role, the default first. `loss` is the lower the better,
# the others the higher. det `hmean` = the mean of the held-out photos' detection and end-to-end hmeans.
SELECT_BY = {"det": ("hmean", "det_hmean", "e2e_hmean", "loss"), "rec": ("loss", "word_accuracy")}


def improves(score: float, best: float, criterion: str) -> bool:
    return score < best if criterion == "loss" else score > best


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device (a CPU build of torch, or no GPU)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


Batch = tuple[Any, ...]


def fit(
    module: OnnxModule,
    train_batches: Callable[[int], Iterable[Batch]],
    validate: Callable[[], dict[str, float]],
    step_loss: Callable[[Batch], torch.Tensor],
    settings: TrainSettings,
    device: torch.device,
) -> dict[str, Any]:
    """Train `module` in place; returns the history (validation before and after each epoch) and leaves
    the module holding the best validated state (the base state when nothing beat it).

    With `settings.ema`, an exponential moving average of the weights follows every step, starting from
    the base weights, and it is the average that is validated and kept: small batches make one step's
    weights jump about, and their average reads more steadily (the same idea as `blend`, along the run).
    """
    started = time.monotonic()
    deadline = started + settings.max_minutes * 60 if settings.max_minutes > 0 else float("inf")
    optimizer = torch.optim.AdamW(module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    base = validate()
    log.info("validation before training: %s", base)
    criterion = settings.select_by
    best, best_state, best_epoch = base[criterion], copy.deepcopy(module.state_dict()), 0
    history: list[dict[str, Any]] = []
    stale, steps, stopped = 0, 0, "epochs"
    average = MovingAverage(module, settings.ema) if settings.ema else None
    for epoch in range(1, settings.epochs + 1):
        module.train()
        losses: list[float] = []
        for i, batch in enumerate(train_batches(epoch)):
            if settings.max_steps and i >= settings.max_steps:
                break
            optimizer.zero_grad(set_to_none=True)
            value = step_loss(batch)
            value.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            optimizer.step()
            if average is not None:
                average.update(module)
            losses.append(float(value.detach()))
            steps += 1
            if time.monotonic() > deadline:
                stopped = "max-minutes"
                break
        trained = average.swap_in(module) if average is not None else None
        scores = validate()
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None, **scores})
        log.info("epoch %d: train loss %s, validation %s", epoch, history[-1]["train_loss"], scores)
        if improves(scores[criterion], best, criterion):
            best, best_epoch, stale = scores[criterion], epoch, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            stale += 1
        if trained is not None:
            module.load_state_dict(trained)
        if stopped == "max-minutes":
            break
        if stale >= settings.patience:
            stopped = "early-stopping"
            break
    module.load_state_dict(best_state)
    module.eval()
    return {
        "selected_by": criterion,
        "base": base,
        "history": history,
        "best_epoch": best_epoch,
        "improved": best_epoch > 0,
        "steps": steps,
        "stopped": stopped,
        "seconds": round(time.monotonic() - started, 1),
    }


class MovingAverage:
    """An exponential moving average of a module's float weights (`decay` per step), from its state now."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"a moving average's decay must be above 0 and below 1, got {decay}")
        self.decay = decay
        self.state = {key: value.detach().clone() for key, value in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for key, value in module.state_dict().items():
            if value.is_floating_point():
                self.state[key].lerp_(value, 1.0 - self.decay)
            else:
                self.state[key].copy_(value)

    def swap_in(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Load the average into `module`; returns the trained state to load back afterwards."""
        trained = copy.deepcopy(module.state_dict())
        module.load_state_dict(self.state)
        return trained


def blend(module: torch.nn.Module, base_state: dict[str, torch.Tensor], share: float) -> None:
    """Move the trained weights `share` of the way back to the base ones, in weight space (WiSE-FT; the
    average of two checkpoints of one run). Both ends come from one network, so the blend has its
    architecture and cost; whether it reads better is measured (the blend is validated, docs/accuracy.md)."""
    state = module.state_dict()
    module.load_state_dict(
        {
            key: torch.lerp(value, base_state[key].to(value.device), share)
            if value.is_floating_point()
            else value
            for key, value in state.items()
        }
    )


def _det_parts(
    module: OnnxModule,
    train: Sequence[Photo],
    val: Sequence[Photo],
    proto: onnx.ModelProto,
    base: Path | None,
    s: TrainSettings,
    device: torch.device,
) -> tuple[Callable[[int], Iterable[Batch]], Callable[[], dict[str, float]], Callable[[Batch], torch.Tensor]]:
    def batches(epoch: int) -> Iterable[Batch]:
        rng = np.random.default_rng([s.seed, epoch])
        return det.batches(train, s.batch_size, rng, s.crop, limit_side=s.limit_side)

    def step_loss(batch: Batch) -> torch.Tensor:
        x, gt, mask = (t.to(device) for t in batch)
        return det.loss(module(x), gt, mask)

    def validate() -> dict[str, float]:
        module.eval()
        total, n = 0.0, 0
        with torch.no_grad():  # the same windows every time: one seed for validation
            rng = np.random.default_rng([s.seed, 0])
            for batch in det.batches(val, s.batch_size, rng, s.crop, limit_side=s.limit_side):
                total += float(step_loss(batch)) * len(batch[0])
                n += len(batch[0])
        reader = validation_reader(export(module, proto).SerializeToString(), base, s.limit_side)
        return {"loss": total / max(n, 1), **read_and_score(reader, val)}

    return batches, validate, step_loss


def validation_reader(detector: bytes, base: Path | None, limit_side: int) -> OCREngine:
    """The engine a detector's validation reads photos with: `detector` (the weights being trained,
    exported as the folder will hold them, fp32) at the input size the folder will name, and the rest as
    the folder being written will have it: the base folder's recognizer, and the stock verifier (a new
    detector's folder carries no verifier)."""
    engine = OCREngine(
        EngineConfig(model_dir=str(base) if base is not None else None).with_options(
            det_limit_side=limit_side
        ),
        detector_session=backends.create_session(detector, backends.SessionOptions()),
    )
    engine.verifier = STOCK_VERIFIER
    return engine


def _rec_parts(
    module: OnnxModule,
    train: Sequence[rec.Example],
    val: Sequence[rec.Example],
    charset: rec.Charset,
    s: TrainSettings,
    device: torch.device,
) -> tuple[Callable[[int], Iterable[Batch]], Callable[[], dict[str, float]], Callable[[Batch], torch.Tensor]]:
    def batches(epoch: int) -> Iterable[Batch]:
        return rec.batches(train, s.batch_size, np.random.default_rng([s.seed, epoch]), augmented=s.augment)

    def step_loss(batch: Batch) -> torch.Tensor:
        x, targets, lengths, _ = batch
        return rec.loss(module(x.to(device)).cpu(), targets, lengths)

    def validate() -> dict[str, float]:
        module.eval()
        total, right, n = 0.0, 0, 0
        with torch.no_grad():
            for x, targets, lengths, chosen in rec.batches(val, s.batch_size, None):
                out = module(x.to(device)).cpu()
                total += float(rec.loss(out, targets, lengths)) * len(chosen)
                right += rec.correct(out, chosen, charset)
                n += len(chosen)
        return {"loss": total / max(n, 1), "word_accuracy": right / max(n, 1)}

    return batches, validate, step_loss


def train(
    role: str,
    data: Sequence[str | Path],
    out: Path,
    settings: TrainSettings,
    *,
    val: Sequence[str | Path] = (),
    base: Path | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Fine-tune `role` (det | rec) on `data` (validated on `val`, or on a held-out share of `data`) and
    write the model folder `out`; returns its manifest's training result (`fit`'s history)."""
    if role not in STOCK:
        raise ValueError(f"role must be det or rec, got {role!r}")
    s = settings.resolved(role)
    if not 0.0 <= s.blend_base < 1.0:
        raise ValueError(f"blend_base must be at least 0 and below 1, got {s.blend_base}")
    if not 0.0 <= s.ema < 1.0:
        raise ValueError(f"ema must be at least 0 (off) and below 1, got {s.ema}")
    if s.limit_side and (role != "det" or not MIN_LIMIT_SIDE <= s.limit_side <= MAX_LIMIT_SIDE):
        raise ValueError(
            f"limit_side (--limit-side) is the detector's input size, from {MIN_LIMIT_SIDE} to "
            f"{MAX_LIMIT_SIDE} px (0 = the base detector's own); got {s.limit_side} for {role}"
        )
    device = pick_device(s.device)
    random.seed(s.seed)
    np.random.seed(s.seed)
    torch.manual_seed(s.seed)
    base_file = model_path(STOCK[role])
    base_folder = read_base(base) if base is not None else None
    if base_folder is not None:
        entry = (base_folder.manifest.get("models") or {}).get(role)
        if entry:
            base_file = base_folder.path / entry["file"]
    if role == "det" and not s.limit_side:  # the base detector's own input size
        s = replace(s, limit_side=(base_folder and base_folder.det_limit_side) or STOCK_LIMIT_SIDE)
    sets = [load_dataset(p) for p in data]
    val_sets = [load_dataset(p) for p in val]
    crop_sets = [d.path for d in sets + val_sets if d.kind == "crops"]
    if role == "det" and crop_sets:
        raise TrainDataError(f"{crop_sets[0]}: word crops train the recognizer only (wildocr train rec)")
    module, proto = load(str(base_file), log_output=role == "rec")
    module.to(device)
    started = time.monotonic()
    if role == "det":
        photos = [p for d in sets for p in d.photos]
        if val_sets:
            train_items, val_items = photos, [p for d in val_sets for p in d.photos]
        else:
            train_items, val_items = split(photos, s.val_fraction, s.seed)
        if not val_items:
            raise TrainDataError("no validation photos: give --val, or two or more training photos")
        if s.select_by != "loss" and not any(not w.ignore for p in val_items for w in p.words):
            raise TrainDataError(
                f"--select-by {s.select_by}: the validation photos have no readable word to score "
                "(give --val photos with annotated words, or --select-by loss)"
            )
        parts = _det_parts(module, train_items, val_items, proto, base, s, device)
        counts = {"train_items": len(train_items), "val_items": len(val_items)}
    else:
        charset = rec.Charset(recognizer_charset(base_file))
        photos = [p for d in sets for p in d.photos]
        crops = [c for d in sets for c in d.crops]
        if val_sets:
            train_photos, train_crops = photos, crops
            val_photos = [p for d in val_sets for p in d.photos]
            val_crops = [c for d in val_sets for c in d.crops]
        else:
            # Held out by photo, not by word: a photo's lines repeat its words, and a word seen in
            # training would make validation (and so early stopping) look better than it is.
            train_photos, val_photos = split(photos, s.val_fraction, s.seed)
            train_crops, val_crops = split(crops, s.val_fraction, s.seed)
        train_words, skipped = rec.examples(train_photos, train_crops, charset)
        val_words, val_skipped = rec.examples(val_photos, val_crops, charset)
        skipped += val_skipped
        if not train_words or not val_words:
            raise TrainDataError(
                f"too few usable words ({len(train_words)} to train on, {len(val_words)} to validate; "
                f"{skipped} labels outside the charset or too long): give --val, or more photos or crops"
            )
        parts = _rec_parts(module, train_words, val_words, charset, s, device)
        counts = {"train_items": len(train_words), "val_items": len(val_words), "labels_skipped": skipped}
    base_state = copy.deepcopy(module.state_dict()) if s.blend_base else None
    result = fit(module, *parts, s, device)
    if base_state is not None and result["improved"]:
        blend(module, base_state, s.blend_base)
        result["blended"] = parts[1]()
        log.info("blended with %.2f of the base weights: validation %s", s.blend_base, result["blended"])
    model = export(module, proto).SerializeToString()
    seconds = time.monotonic() - started
    training = {
        "data": [{**d.describe(), "role": role} for d in sets]
        + [{**d.describe(), "role": role, "use": "validation"} for d in val_sets],
        "settings": {**asdict(s), **counts},
        "seconds": seconds,
        "device": device.type,
    }
    metrics = {
        f"{role}_validation": {
            "base": result["base"],
            "best": (result["history"][result["best_epoch"] - 1] if result["improved"] else result["base"]),
            "selected_by": result["selected_by"],
            "best_epoch": result["best_epoch"],
            "improved": result["improved"],
            "steps": result["steps"],
            "stopped": result["stopped"],
            "history": result["history"],
            **({"blended": result["blended"]} if "blended" in result else {}),
        }
    }
    write_model_folder(
        out,
        role,
        model,
        base_file,
        limit_side=s.limit_side if role == "det" else None,
        name=name or out.name,
        training=training,
        metrics=metrics,
        base_folder=base,
    )
    return {**result, **counts, "out": str(out), "file": str(out / ROLE_FILES[role])}
