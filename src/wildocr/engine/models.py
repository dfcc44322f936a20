"""Where the weights come from and how ONNX Runtime runs them.

The PP-OCR ONNX files ship inside the `rapidocr` wheel; we only read them from its package folder, so
nothing is ever downloaded at run time. The recognizer's charset is stored in the model's own metadata.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from wildocr.engine import backends

log = logging.getLogger(__name__)

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"


class ModelFileError(RuntimeError):
    """A model file is missing or unreadable: raised at start-up, before any image is read."""


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


def available_providers(device: str = "auto") -> list[str]:
    """ONNX Runtime providers to use: CUDA first when it is usable and wanted, CPU always last."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeError("device='cuda' asked for, but onnxruntime has no CUDAExecutionProvider here")
    return ["CPUExecutionProvider"]


@dataclass(frozen=True)
class SessionOptions:
    device: str = "auto"
    intra_op_threads: int = 0  # 0: ONNX Runtime picks (all physical cores)
    backend: str = "onnxruntime"  # onnxruntime | openvino (resolved: see backends.resolve_backend)
    streams: int = 1  # OpenVINO: requests that may run at once (the engine's worker threads)
    # Memory (docs/performance.md measures each): one CPU arena shared by every session of the process, so
    # detection, orientation and recognition reuse each other's freed buffers instead of each keeping its
    # own peak, and no call re-faults fresh pages (what plain malloc'd buffers cost: ~50% more CPU with a
    # 1 MB mmap threshold). Memory patterns stay off: they plan and keep one block per input shape. The
    # arena lives as long as the process and keeps its largest working set (one task, one engine).
    cpu_arena: bool = True
    shared_arena: bool = True  # CPU only; a CUDA session keeps its own allocators
    mem_pattern: bool = False
    # Idle intra-op threads spin for work by default: CPU time burnt for no output on a shared host.
    spinning: bool = False


def create_session(model: bytes | Path, options: SessionOptions) -> backends.Session:
    """An inference session tuned for OCR's many input shapes, on the backend `options` names."""
    if options.backend == "openvino":
        try:
            return backends.OpenVINOSession(
                model, threads=options.intra_op_threads or (os.cpu_count() or 1), streams=options.streams
            )
        except Exception as exc:  # corrupt protobuf, wrong file
            raise ModelFileError(
                f"cannot load model {model if isinstance(model, Path) else '<bytes>'} in OpenVINO: {exc}"
            ) from exc
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = options.cpu_arena
    so.enable_mem_pattern = options.mem_pattern
    on_gpu = available_providers(options.device)[0] == "CUDAExecutionProvider"
    if options.cpu_arena and options.shared_arena and not on_gpu:
        _register_shared_cpu_arena()
        so.add_session_config_entry("session.use_env_allocators", "1")
    if not options.spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = []
    for name in available_providers(options.device):
        if name == "CUDAExecutionProvider":
            # EXHAUSTIVE re-tunes every new input shape: a known reason ORT-GPU OCR runs slower than CPU.
            providers.append(
                (name, {"cudnn_conv_algo_search": "HEURISTIC", "arena_extend_strategy": "kSameAsRequested"})
            )
        else:
            providers.append(name)
    source = str(model) if isinstance(model, Path) else model
    try:
        session = ort.InferenceSession(source, sess_options=so, providers=providers)
    except Exception as exc:  # corrupt protobuf, wrong file
        raise ModelFileError(
            f"cannot load model {model if isinstance(model, Path) else '<bytes>'}: {exc}"
        ) from exc
    return session


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


_SHARED_ARENA_LOCK = threading.Lock()
_shared_arena_registered = False


def _register_shared_cpu_arena() -> None:
    """Register, once per process, the CPU arena that sessions with `session.use_env_allocators` draw on."""
    global _shared_arena_registered
    with _SHARED_ARENA_LOCK:
        if _shared_arena_registered:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        # 0 = no limit, extend by powers of two (kNextPowerOfTwo: fewer, reusable chunks; measured below
        # kSameAsRequested), default initial chunk and dead-bytes limits.
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 0, -1, -1))
        _shared_arena_registered = True
