"""What every `wildocr` command parses the same way: engine flags, storage options, dates."""

from __future__ import annotations

import argparse
from typing import Any

from wildocr.pipeline import options
from wildocr.storage import tables
from wildocr.storage.objectstore import StorageOptions


class UsageError(Exception):
    """A bad argument found after parsing (an engine option, a storage options file): exit status 2."""


def storage_options(args: argparse.Namespace) -> StorageOptions:
    try:
        return options.parse_storage_options(args.storage_options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return options.engine_options_from(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def model_dir(args: argparse.Namespace) -> str | None:
    """`--model-dir`, checked (manifest, files, hashes, graphs): a broken folder is exit status 2."""
    try:
        return options.model_dir_from(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def engine(args: argparse.Namespace) -> Any:
    """The engine of a command line, loaded now: bad model files fail before anything is read."""
    from wildocr.engine import OCREngine  # ONNX Runtime: only for commands that read

    return OCREngine(options.engine_config(engine_options(args), model_dir=model_dir(args)))


def dt(text: str) -> str:
    try:
        return tables.validate_dt(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value
