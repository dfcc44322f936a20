"""ONNX Runtime sessions (CPU, CUDA), tuned for OCR's many input shapes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime as ort

from wildocr.engine.models import ModelFileError

if TYPE_CHECKING:
    from wildocr.engine.backends import Session, SessionOptions


def available_providers(device: str = "auto") -> list[str]:
    """ONNX Runtime providers to use: CUDA first when it is usable and wanted, CPU always last."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeError("device='cuda' asked for, but onnxruntime has no CUDAExecutionProvider here")
    return ["CPUExecutionProvider"]


def create_session(model: bytes | Path, options: SessionOptions) -> Session:
    """An ONNX Runtime session with the memory and thread settings of `options` (SessionOptions says why)."""
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
    providers: list[str | tuple[str, dict[str, Any]]] = []
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


_SHARED_ARENA_LOCK = threading.Lock()
_shared_arena_registered = False


def _register_shared_cpu_arena() -> None:
    """Register, once per process, the CPU arena that sessions with `session.use_env_allocators` draw on."""
    global _shared_arena_registered
    with _SHARED_ARENA_LOCK:
        if _shared_arena_registered:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        # 0 = no limit, extend by powers of two (kNextPowerOfTwo: fewer, reusable chunks than
        # kSameAsRequested, docs/benchmarks.md), default initial chunk and dead-bytes limits.
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 0, -1, -1))
        _shared_arena_registered = True
