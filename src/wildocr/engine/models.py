"""The model files: where the weights come from, their hashes, the recognizer's charset, graph edits.

The PP-OCR ONNX files ship inside the `rapidocr` wheel; we only read them from its package folder, so
nothing is ever downloaded at run time. The recognizer's charset is stored in the model's own metadata.
How a backend runs the files is `engine/backends/`; the int8 detector is built by `engine/quantize.py`.

A *model folder* (`load_model_folder`, docs/models.md) replaces the detector and/or the recognizer with
fine-tuned copies of the stock graphs: same inputs and outputs, new weights, the same charset.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from wildocr.engine.verify import Verifier

log = logging.getLogger(__name__)

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"


# Bump when `with_device_argmax` changes the graph in a way the cache key does not record.
ARGMAX_VERSION = "2"


class ModelFileError(RuntimeError):
    """A model file is missing or unreadable: raised at start-up, before any image is read."""


def cache_dir() -> Path:
    """Where models built from the shipped ones are kept (the int8 detector, the edited recognizer)."""
    root = os.environ.get("WILDOCR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wildocr"
    )
    return Path(root)


def models_dir() -> Path:
    """The `models/` folder of the installed rapidocr package (overridable with WILDOCR_MODELS_DIR)."""
    override = os.environ.get("WILDOCR_MODELS_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "the 'rapidocr' package is not installed: it carries the PP-OCR weights wildocr reads "
            "(pip install -c constraints.txt -e '.[cpu]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_path(name: str) -> Path:
    path = models_dir() / name
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path} (expected inside the rapidocr wheel)")
    if path.stat().st_size < 1024:
        raise ModelFileError(f"model file is truncated: {path} ({path.stat().st_size} bytes)")
    return path


def file_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per version of the file (a model folder may be rewritten in place
    by a new fine-tune while a worker lives)."""
    stat = path.stat()
    return _sha256(path, stat.st_mtime_ns, stat.st_size)


@cache
def _sha256(path: Path, _mtime_ns: int, _size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recognizer_charset(model: bytes | Path) -> list[str]:
    """CTC labels: blank at 0, the model's characters, then the space it was trained with.

    Read from the ONNX file's metadata (not from a session), so that every backend gets the same labels.
    """
    import onnx

    proto = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    meta = {p.key: p.value for p in proto.metadata_props}
    if "character" not in meta:
        raise ModelFileError("the recognizer model has no 'character' metadata (wrong model file?)")
    return ["<blank>", *meta["character"].splitlines(), " "]


def with_device_argmax(model_path: Path) -> bytes:
    """The recognizer with ArgMax/ReduceMax appended over the class axis, and the space's probability.

    Its softmax output is ~18,700 floats per time step (about 3 MB per crop); reducing it inside the
    graph means only indices and maxima leave the device (GPU) or the ORT thread pool (CPU). The space
    (the last class) comes out per step too: a word gap the arg-max reads as blank still shows there
    (`RecognizerConfig.space_prob`).
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(model_path))
    graph = model.graph
    probs = graph.output[0].name
    graph.node.extend(
        [
            helper.make_node("ArgMax", [probs], ["ctc_index"], axis=2, keepdims=0),
            helper.make_node("ReduceMax", [probs], ["ctc_prob"], axes=[2], keepdims=0)
            if model.opset_import[0].version < 18
            else helper.make_node("ReduceMax", [probs, "ctc_axes"], ["ctc_prob"], keepdims=0),
            helper.make_node("Gather", [probs, "ctc_space_class"], ["ctc_space"], axis=2),
        ]
    )
    if model.opset_import[0].version >= 18:
        graph.initializer.append(onnx.numpy_helper.from_array(np.array([2], dtype=np.int64), "ctc_axes"))
    # A 0-d index drops the class axis: (batch, steps). -1 is the space, the charset's last label.
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(-1, dtype=np.int64), "ctc_space_class"))
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("ctc_index", onnx.TensorProto.INT64, None),
            helper.make_tensor_value_info("ctc_prob", onnx.TensorProto.FLOAT, None),
            helper.make_tensor_value_info("ctc_space", onnx.TensorProto.FLOAT, None),
        ]
    )
    return model.SerializeToString()


# Model folders ------------------------------------------------------------------------------------------

MODEL_FOLDER_FORMAT = "wildocr-model-folder/1"
MANIFEST_NAME = "manifest.json"
# Roles a folder may replace, and the stock file each must match input for input, output for output.
FOLDER_ROLES = {"det": DET_MODEL, "rec": REC_MODEL}
# The manifest key of a folder's own word verifier (engine/verify.py), fitted to its readings.
VERIFIER_KEY = "verifier"
# The input sizes a folder may name for its detector (`models.det.limit_side`): below 32 px the network's
# 32x down-sampling leaves nothing, above 4096 one photo's activations need gigabytes.
MIN_LIMIT_SIDE, MAX_LIMIT_SIDE = 32, 4096


@dataclass(frozen=True)
class ModelFolder:
    """A checked model folder: the files it replaces (None = that role keeps the stock weights).

    Attributes:
        path: the folder, absolute.
        name: the folder's own name (what the tables' det_model / rec_model start with).
        det: the fine-tuned detector (fp32), or None.
        rec: the fine-tuned recognizer, or None.
        verifier: the word verifier fitted to this folder's readings, or None (the engine's stock one).
        manifest: the parsed manifest.json (training data, settings, metrics: free-form).
        det_limit_side: the input short side its detector was trained and validated at
            (`models.det.limit_side`), which the engine reads at unless `det_limit_side` is set; None =
            the stock detector's.
    """

    path: Path
    name: str
    det: Path | None
    rec: Path | None
    manifest: dict[str, Any]
    verifier: Verifier | None = None
    det_limit_side: int | None = None

    def label(self, path: Path) -> str:
        """How the tables name a file of this folder: `<folder name>/<file>`."""
        return f"{self.name}/{path.relative_to(self.path).as_posix()}"


def _io_signature(path: Path) -> tuple[Any, ...]:
    """Names, element types and fixed sizes of a graph's inputs and outputs (symbolic sizes match any
    other symbolic size: an export may rename them). Once per version of the file."""
    stat = path.stat()
    return _signature(path, stat.st_mtime_ns, stat.st_size)


def _charset(path: Path) -> list[str]:
    stat = path.stat()
    return _charset_of(path, stat.st_mtime_ns, stat.st_size)


@cache
def _charset_of(path: Path, _mtime_ns: int, _size: int) -> list[str]:
    return recognizer_charset(path)


@cache
def _signature(path: Path, _mtime_ns: int, _size: int) -> tuple[Any, ...]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelFileError(f"{path.name} is not an ONNX model: {exc}") from None
    initializers = {i.name for i in proto.graph.initializer}

    def describe(values: Any) -> tuple[Any, ...]:
        return tuple(
            (
                v.name,
                v.type.tensor_type.elem_type,
                tuple(d.dim_value if d.HasField("dim_value") else "?" for d in v.type.tensor_type.shape.dim),
            )
            for v in values
            if v.name not in initializers
        )

    return describe(proto.graph.input), describe(proto.graph.output)


def _problem(where: str, what: str) -> ModelFileError:
    return ModelFileError(f"model folder {where}: {what}")


def load_model_folder(folder: str | Path) -> ModelFolder:
    """Read and check a model folder (`manifest.json` and the ONNX files it names), or raise.

    Checked before any image is read: the manifest's format, every named file inside the folder and its
    SHA-256, each graph's inputs and outputs against the stock model's (same architecture), and the
    recognizer's charset (the stock one: a folder never changes what can be read, only how well).
    Local paths only (the engine opens the files itself).

    Raises:
        ModelFileError: the first problem found, naming the folder and the file.
    """
    text = str(folder)
    if "://" in text and not text.startswith("file://"):
        raise _problem(text, "only a local folder is supported (copy the folder to the worker's disk)")
    path = Path(text.removeprefix("file://")).expanduser().resolve()
    if not path.is_dir():
        raise _problem(text, "not found (or not a folder)")
    manifest_path = path / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _problem(text, f"no {MANIFEST_NAME} in it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _problem(text, f"cannot read {MANIFEST_NAME}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _problem(text, f"{MANIFEST_NAME} is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise _problem(text, f"{MANIFEST_NAME} must hold a JSON object")
    if manifest.get("format") != MODEL_FOLDER_FORMAT:
        raise _problem(
            text, f"{MANIFEST_NAME} format is {manifest.get('format')!r}, expected {MODEL_FOLDER_FORMAT!r}"
        )
    roles = manifest.get("models")
    if not isinstance(roles, dict):
        raise _problem(text, f"{MANIFEST_NAME} needs a 'models' object (det and/or rec)")
    unknown = sorted(set(roles) - set(FOLDER_ROLES))
    if unknown:
        raise _problem(text, f"unknown model role(s) {unknown} in {MANIFEST_NAME}; known: det, rec")
    files: dict[str, Path] = {}
    for role, entry in roles.items():
        file = _checked_file(text, path, f"models.{role}", entry)
        stock = model_path(FOLDER_ROLES[role])
        try:
            same_graph = _io_signature(file) == _io_signature(stock)
            same_charset = role != "rec" or _charset(file) == _charset(stock)
        except ModelFileError as exc:  # not ONNX, or a recognizer without its charset
            raise _problem(text, str(exc)) from None
        if not same_graph:
            raise _problem(
                text,
                f"{entry['file']} has other inputs or outputs than the stock {stock.name} "
                f"(its {role} must be the same graph with new weights)",
            )
        if not same_charset:
            raise _problem(text, f"{entry['file']} has another charset than the stock {stock.name}")
        files[role] = file
    verifier = None
    if VERIFIER_KEY in manifest:
        verifier_file = _checked_file(text, path, VERIFIER_KEY, manifest[VERIFIER_KEY])
        try:
            verifier = Verifier.from_json(json.loads(verifier_file.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise _problem(text, f"{verifier_file.name}: {exc}") from None
    det_limit_side = roles.get("det", {}).get("limit_side")
    if det_limit_side is not None and (
        type(det_limit_side) is not int or not MIN_LIMIT_SIDE <= det_limit_side <= MAX_LIMIT_SIDE
    ):
        raise _problem(
            text,
            f"models.det.limit_side must be a whole number of pixels from {MIN_LIMIT_SIDE} to "
            f"{MAX_LIMIT_SIDE}, not {det_limit_side!r}",
        )
    return ModelFolder(
        path, path.name, files.get("det"), files.get("rec"), manifest, verifier, det_limit_side
    )


def _checked_file(text: str, folder: Path, key: str, entry: object) -> Path:
    """A file the manifest names under `key`: inside the folder, present, with the SHA-256 it states."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
        raise _problem(text, f"{key} needs a 'file' name")
    if not isinstance(entry.get("sha256"), str):
        raise _problem(text, f"{key} needs the file's 'sha256'")
    file = (folder / entry["file"]).resolve()
    if not file.is_relative_to(folder):
        raise _problem(text, f"{key}.file {entry['file']!r} is outside the folder")
    if not file.is_file():
        raise _problem(text, f"{key}.file {entry['file']!r} is missing")
    actual = file_sha256(file)
    if actual != entry["sha256"].strip().lower():
        raise _problem(
            text,
            f"{entry['file']} has SHA-256 {actual}, the manifest says {entry['sha256']} "
            "(a changed or partly copied file)",
        )
    return file


def _atomic_write(target: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)  # concurrent workers never read half a file


def recognizer_model(model_path: Path) -> tuple[bytes | Path, list[str]]:
    """The recognizer with its on-device arg-max (`with_device_argmax`) and its charset, cached on disk.

    Editing the graph needs `onnx` (imported, parsed and serialised: about half a second of every start);
    the edited file and its charset are kept in `cache_dir()` under a key of the source file's hash and the
    onnx version, so later starts only read them. Where the cache cannot be written, the edited model is
    returned as bytes (same graph, same readings).
    """
    try:
        onnx_version = metadata.version("onnx")
    except metadata.PackageNotFoundError:
        onnx_version = "none"
    identity = f"{file_sha256(model_path)}:{onnx_version}:{ARGMAX_VERSION}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    target = cache_dir() / f"{model_path.stem}.argmax-{key}.onnx"
    labels = target.with_suffix(".charset.json")
    if target.is_file() and labels.is_file():  # the labels are written first: the model marks it complete
        try:
            return target, json.loads(labels.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("unreadable cached charset %s: rebuilding it", labels)
    edited = with_device_argmax(model_path)
    charset = recognizer_charset(edited)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(labels, json.dumps(charset, ensure_ascii=False).encode("utf-8"))
        _atomic_write(target, edited)
    except OSError as exc:
        log.warning("cannot cache the edited recognizer in %s (%s): using it from memory", target.parent, exc)
        return edited, charset
    return target, charset
