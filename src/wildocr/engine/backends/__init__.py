"""Inference backends behind one interface: ONNX Runtime (CPU, CUDA) and OpenVINO (CPU).

Pre- and post-processing (detection.py, recognition.py, orientation.py) never see which backend runs the
network: they call the small subset of `onnxruntime.InferenceSession` defined by `Session` below
(`get_inputs()[0].name`, `run(None, {name: array})`, `get_providers()`), which ONNX Runtime sessions have
natively and `OpenVINOSession` provides. Both backends read the same ONNX files (OpenVINO converts them
in memory at load time), so the weights, the int8 detector and the graph edits are shared.

`create_session(model, options)` builds a session on the backend `options.backend` names; each backend's
module (`onnxruntime.py`, `openvino.py`) holds its own set-up, as RapidOCR lays them out.

`backend="auto"` picks OpenVINO on CPU when it is installed, ONNX Runtime otherwise and always on CUDA.
The engine's default is ONNX Runtime: OpenVINO's words differ slightly (its int8 detector arithmetic), and
whether it saves CPU depends on the processor (20% less on an Intel Xeon, more and twice the memory on an
AMD Zen 4; docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from wildocr.engine.backends import onnxruntime as _ort
from wildocr.engine.backends import openvino as _ov
from wildocr.engine.backends.onnxruntime import available_providers
from wildocr.engine.backends.openvino import OPENVINO_PROVIDER, OpenVINOSession, openvino_available

__all__ = [
    "BACKENDS",
    "OPENVINO_PROVIDER",
    "ModelInput",
    "OpenVINOSession",
    "Session",
    "SessionOptions",
    "available_providers",
    "create_session",
    "openvino_available",
    "resolve_backend",
]

BACKENDS = ("auto", "onnxruntime", "openvino")


class ModelInput(Protocol):
    @property
    def name(self) -> str: ...


class Session(Protocol):
    """The part of `onnxruntime.InferenceSession` the engine uses; every backend provides it."""

    def get_inputs(self) -> Sequence[ModelInput]: ...
    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...
    def get_providers(self) -> list[str]: ...


@dataclass(frozen=True)
class SessionOptions:
    """How a session runs. The engine fills in the first four from `EngineConfig`; the rest are ONNX
    Runtime memory and thread settings whose defaults hold for OCR (docs/benchmarks.md measures each).

    Attributes:
        device: auto | cpu | cuda (ONNX Runtime; OpenVINO runs on CPU only).
        intra_op_threads: threads per call; 0 lets the backend pick (all physical cores).
        backend: onnxruntime | openvino, already resolved (`resolve_backend`).
        streams: OpenVINO: infer requests that may run at once (the engine's worker threads).
        cpu_arena: ONNX Runtime's CPU arena allocator. Without it every call re-faults fresh pages
            (about 50% more CPU with a 1 MB mmap threshold).
        shared_arena: one CPU arena for every session of the process, so detection, orientation and
            recognition reuse each other's freed buffers instead of each keeping its own peak. It lives as
            long as the process and keeps its largest working set (one task, one engine). CPU only: a
            CUDA session keeps its own allocators.
        mem_pattern: ONNX Runtime memory patterns; off, because they plan and keep one block per input
            shape, and OCR inputs come in many shapes.
        spinning: idle intra-op threads spin for work (ONNX Runtime's default); off, because that burns
            CPU for no output on a shared host.
    """

    device: str = "auto"
    intra_op_threads: int = 0
    backend: str = "onnxruntime"
    streams: int = 1
    cpu_arena: bool = True
    shared_arena: bool = True
    mem_pattern: bool = False
    spinning: bool = False


def resolve_backend(backend: str, on_gpu: bool) -> str:
    """The backend that will run: 'auto' → OpenVINO on CPU when installed, else ONNX Runtime."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "openvino":
        if on_gpu:
            raise ValueError(
                "backend='openvino' runs on CPU only here; use device='cpu' or backend='onnxruntime'"
            )
        if not openvino_available():
            raise RuntimeError("backend='openvino' asked for, but the 'openvino' package is not installed")
        return "openvino"
    if backend == "auto" and not on_gpu and openvino_available():
        return "openvino"
    return "onnxruntime"


def create_session(model: bytes | Path, options: SessionOptions) -> Session:
    """An inference session for `model` (a path or the ONNX bytes) on the backend `options` names.

    Raises:
        ModelFileError: the backend cannot load the model (corrupt protobuf, wrong file).
    """
    if options.backend == "openvino":
        return _ov.create_session(model, options)
    return _ort.create_session(model, options)
