"""The model files: where the weights come from, their hashes, the recognizer's charset, graph edits.

The PP-OCR ONNX files ship inside the `rapidocr` wheel; we only read them from its package folder, so
nothing is ever downloaded at run time. The recognizer's charset is stored in the model's own metadata.
How a backend runs the files is `engine/backends/`; the int8 detector is built by `engine/quantize.py`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"


# Bump when `with_device_argmax` changes the graph in a way the cache key does not record.
ARGMAX_VERSION = "1"


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


@cache
def file_sha256(path: Path) -> str:
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
    """The recognizer with ArgMax/ReduceMax appended over the class axis.

    Its softmax output is ~18,700 floats per time step (about 3 MB per crop); reducing it inside the
    graph means only indices and maxima leave the device (GPU) or the ORT thread pool (CPU).
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
        ]
    )
    if model.opset_import[0].version >= 18:
        graph.initializer.append(onnx.numpy_helper.from_array(np.array([2], dtype=np.int64), "ctc_axes"))
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("ctc_index", onnx.TensorProto.INT64, None),
            helper.make_tensor_value_info("ctc_prob", onnx.TensorProto.FLOAT, None),
        ]
    )
    return model.SerializeToString()


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
