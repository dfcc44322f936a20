"""`wildocr train det|rec|verifier`: fine-tune the detector or the recognizer into a model folder, or fit
the word verifier to a folder's readings.

Needs the `train` extra (PyTorch, shapely): `pip install -c constraints.txt -e '.[train]'`. The work is
`wildocr.train`'s; this module parses the arguments and prints the result.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Any

from wildocr.cli.args import UsageError, positive


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune the detector or recognizer into a model folder, or fit its verifier (extra `train`)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "role",
        choices=("det", "rec", "verifier"),
        help="det: the text detector; rec: the recognizer; verifier: refit the word verifier to the "
        "readings of the model folder --out (after training its recognizer)",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR_OR_JSONL",
        help="ICDAR folder (images/ + gts/), JSON lines, or word crops (labels.tsv, rec only); repeatable",
    )
    p.add_argument(
        "--val",
        action="append",
        default=[],
        metavar="DIR_OR_JSONL",
        help="validation data (default: a held-out share of --data, --val-fraction)",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="MODEL_DIR",
        help="the model folder to write (verifier: the existing folder to read with and add it to)",
    )
    p.add_argument(
        "--base",
        type=Path,
        metavar="MODEL_DIR",
        help="start from this model folder's weights (and keep its other role) instead of the stock ones",
    )
    p.add_argument("--name", help="the folder's name in its manifest (default: the folder's own name)")
    p.add_argument("--epochs", type=positive, default=10)
    p.add_argument(
        "--steps-per-epoch", type=positive, help="batches per epoch at most (default: the whole pass)"
    )
    p.add_argument("--batch-size", type=positive, help="photos (det, default 4) or crops (rec, default 64)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default: 1e-4 det, 1e-5 rec)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument(
        "--patience", type=positive, default=2, help="epochs without validation gain before stopping"
    )
    p.add_argument("--max-minutes", type=_minutes, help="stop training after this many minutes (then export)")
    p.add_argument("--crop", type=positive, default=640, help="det: training window side in pixels")
    p.add_argument(
        "--limit-side",
        type=positive,
        metavar="PX",
        help="det: the input short side to train and validate at, recorded in the folder, which the engine "
        "then reads at (default: the base detector's own, 736 for the stock weights)",
    )
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--augment",
        action="store_true",
        help="rec: show each training crop a little looser or tighter, blurred, recompressed or re-exposed",
    )
    p.add_argument(
        "--blend-base",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="the folder holds SHARE x the base weights + (1 - SHARE) x the trained ones (0.5: their mean; "
        "default 0: the trained ones)",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="validate and keep an exponential moving average of the weights (DECAY per step, e.g. 0.99; "
        "default 0: the weights themselves)",
    )
    p.add_argument(
        "--select-by",
        default="auto",
        metavar="SCORE",
        help="the validation score that keeps an epoch. det: hmean (default: the mean of the held-out "
        "photos' detection and end-to-end hmeans, the engine reading them whole), det_hmean, e2e_hmean or "
        "loss (the DB map loss on training windows); rec: loss (default) or word_accuracy",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    if args.role == "verifier":
        return _fit_verifier(args)
    if importlib.util.find_spec("torch") is None:
        raise UsageError(
            "training needs PyTorch: install the 'train' extra (pip install -c constraints.txt -e '.[train]')"
        )
    from wildocr.train.data import TrainDataError
    from wildocr.train.fit import TrainSettings, train

    if not 0 < args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size or 0,
        lr=args.lr or 0.0,
        val_fraction=args.val_fraction,
        patience=args.patience,
        max_minutes=args.max_minutes or 0.0,
        max_steps=args.steps_per_epoch or 0,
        crop=args.crop,
        limit_side=args.limit_side or 0,
        device=args.device,
        seed=args.seed,
        augment=args.augment,
        blend_base=args.blend_base,
        select_by=args.select_by,
        ema=args.ema,
    )
    # A fine-tune runs for minutes to hours: its per-epoch validation is shown without --verbose.
    logging.getLogger("wildocr.train").setLevel(logging.INFO)
    try:
        result: dict[str, Any] = train(
            args.role, args.data, args.out, settings, val=args.val, base=args.base, name=args.name
        )
    except (TrainDataError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    keys = ("out", "file", "selected_by", "improved", "best_epoch", "steps", "stopped", "seconds")
    summary = {k: result[k] for k in keys}
    summary["validation_base"] = result["base"]
    summary["validation_best"] = (
        result["history"][result["best_epoch"] - 1] if result["improved"] else result["base"]
    )
    if "blended" in result:
        summary["validation_blended"] = result["blended"]
    json.dump(summary, sys.stdout, default=str)
    sys.stdout.write("\n")
    if not result["improved"]:
        print(
            "no epoch beat the base weights on validation: the folder holds them unchanged", file=sys.stderr
        )
    return 0


def _fit_verifier(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("shapely") is None:
        raise UsageError(
            "fitting the verifier needs shapely: install the 'train' extra "
            "(pip install -c constraints.txt -e '.[train]')"
        )
    if args.base or args.val:
        raise UsageError("verifier: --base and --val do not apply (it reads with the folder --out itself)")
    from wildocr.engine import ModelFileError
    from wildocr.train.data import TrainDataError
    from wildocr.train.verifier import train_verifier

    logging.getLogger("wildocr.train").setLevel(logging.INFO)
    try:
        result = train_verifier(args.data, args.out)
    except (TrainDataError, ModelFileError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0
