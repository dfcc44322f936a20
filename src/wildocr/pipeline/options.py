"""Engine and storage options as users give them: one parser for the CLI, the DAGs and the tests.

Engine options are the flat `EngineConfig.with_options` keys (`verify_words`, `det_limit_side`,
`rec_batch_size`, ...): `--option KEY=VALUE` on every command that reads images, the `engine_options`
Param of the DAGs. They are checked against the engine's config before any work starts, so a typo fails at
once instead of being ignored. Storage options are fsspec's (`endpoint_url`, `key`, ...), given as JSON or
`@file.json` (keeps secrets out of the process list).

The model folder is not an engine option but a first-class argument (`--model-dir`, the DAGs' `model_dir`
Param and `wildocr_model_dir` Variable): it says which weights run, not how. `validate_model_dir` is its
one check, shared by every entry point.
"""

from __future__ import annotations

import argparse
import json
import threading
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from wildocr.storage.objectstore import StorageOptions

if TYPE_CHECKING:
    from wildocr.engine import EngineConfig, OCREngine

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "onnxruntime", "openvino")


# Storage options ---------------------------------------------------------------------------------------


def parse_storage_options(text: str | None) -> StorageOptions:
    """JSON inline, or `@path` to a JSON file; it must hold an object. None or '' gives None."""
    if not text:
        return None
    source = "--storage-options"
    if text.startswith("@"):
        source = text[1:]
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ValueError(f"cannot read storage options from {source}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"storage options in {source} are not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"storage options must be a JSON object, got {type(value).__name__}")
    return value


# Engine options ----------------------------------------------------------------------------------------


@cache
def engine_option_types() -> dict[str, Any]:
    """Every flat engine option and its type: EngineConfig's own fields, `det_*` and `rec_*`."""
    from wildocr.engine import DetectorConfig, EngineConfig, RecognizerConfig

    hints = {
        prefix + name: hint
        for prefix, cls in (("det_", DetectorConfig), ("rec_", RecognizerConfig), ("", EngineConfig))
        for name, hint in typing.get_type_hints(cls).items()
    }
    return {key: hints[key] for key in EngineConfig().flat()}


def _coerce(hint: Any, value: Any) -> tuple[bool, Any]:
    """(value fits the type, the value as the config wants it: JSON lists become tuples)."""
    if hint is Any:
        return True, value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            fits, coerced = _coerce(arm, value)
            if fits:
                return True, coerced
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number, float(value) if number else value
    if hint is str:
        return isinstance(value, str), value
    if origin is tuple and isinstance(value, list | tuple):
        (item, *_rest) = typing.get_args(hint)
        coerced = [_coerce(item, v) for v in value]
        return all(fits for fits, _ in coerced), tuple(v for _, v in coerced)
    return False, value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def validate_engine_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options, checked: every key a flat engine option, every value of its type (ValueError)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"engine options must be an object of KEY: VALUE, got {options!r}")
    known = engine_option_types()
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key == "model_dir":
            raise ValueError(
                "model_dir is not an engine option: give the folder with --model-dir (CLI) or the "
                "model_dir Param (DAGs)"
            )
        if key not in known:
            close = sorted(k for k in known if k.split("_")[-1] in key or key in k)[:5]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown engine option {key!r}{hint}; known: {', '.join(sorted(known))}")
        fits, coerced = _coerce(known[key], value)
        if not fits:
            raise ValueError(f"engine option {key}={value!r}: expected {_type_name(known[key])}")
        out[key] = coerced
    return out


def validate_model_dir(value: str | None) -> str | None:
    """A model folder checked the way the engine will load it (manifest, files, hashes, graphs), as an
    absolute local path; None or '' = the stock weights. ValueError with the reason otherwise."""
    from wildocr.engine.models import ModelFileError, load_model_folder

    if value is None or not str(value).strip():
        return None
    try:
        return str(load_model_folder(str(value).strip()).path)
    except ModelFileError as exc:
        raise ValueError(str(exc)) from None


def engine_config(options: Mapping[str, Any] | None = None, *, model_dir: str | None = None) -> EngineConfig:
    """An `EngineConfig` with checked flat options applied (ValueError for a bad key or value) and the
    model folder (None: the stock weights)."""
    from wildocr.engine import EngineConfig

    config = EngineConfig(model_dir=validate_model_dir(model_dir))
    return config.with_options(**validate_engine_options(options))


_ENGINES: dict[tuple[str, str | None, bool], OCREngine] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(
    options: Mapping[str, Any] | None = None, *, model_dir: str | None = None, lazy: bool = True
) -> OCREngine:
    """The process's engine for these options and model folder, created on first use and reused by every
    later task.

    Loading models costs seconds: a worker that runs many tasks (dag.test, the demo, a Celery worker)
    loads them once. `lazy` engines load each model on first use, so a staged task holds only its stage's.
    """
    from wildocr.engine import OCREngine

    checked = validate_engine_options(options)
    key = (json.dumps(checked, sort_keys=True, default=str), model_dir or None, lazy)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = OCREngine(engine_config(checked, model_dir=model_dir), lazy=lazy)
    return engine


# Command-line arguments -------------------------------------------------------------------------------


def engine_option(text: str) -> tuple[str, Any]:
    """'KEY=VALUE' with VALUE as JSON when it parses (1, true, "x", [160, 320]), else the plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """`--device`, `--backend` and `--option KEY=VALUE`: the same on every command that reads images."""
    group = parser.add_argument_group("engine")
    group.add_argument("--device", choices=DEVICES, help="where the models run (default: auto)")
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        help="inference backend (default: onnxruntime; auto = OpenVINO on CPU when installed)",
    )
    group.add_argument(
        "--option",
        type=engine_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any flat engine option (verify_words=false, det_limit_side=960, rec_batch_size=16, ...); "
        "repeatable",
    )
    group.add_argument(
        "--model-dir",
        metavar="DIR",
        help="a model folder (manifest.json and fine-tuned ONNX files, docs/models.md) to read with "
        "instead of the stock weights; local path",
    )


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options",
        metavar="JSON|@FILE",
        help="fsspec options as JSON, or @file.json (s3: key, secret, endpoint_url)",
    )


def engine_options_from(args: argparse.Namespace) -> dict[str, Any]:
    """The flat engine options of a command line: `--option`s, then `--device` and `--backend`."""
    options = dict(args.option)
    for name in ("device", "backend"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    return validate_engine_options(options)


def model_dir_from(args: argparse.Namespace) -> str | None:
    """The checked `--model-dir` of a command line (None: the stock weights)."""
    return validate_model_dir(getattr(args, "model_dir", None))
