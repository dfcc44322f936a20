"""Inference backends behind one interface: ONNX Runtime (CPU, CUDA) and OpenVINO (CPU).

Pre- and post-processing (detection.py, recognition.py, orientation.py) never see which backend runs the
network: they call the small subset of `onnxruntime.InferenceSession` defined by `Session` below
(`get_inputs()[0].name`, `run(None, {name: array})`, `get_providers()`), which ONNX Runtime sessions have
natively and `OpenVINOSession` provides. Both backends read the same ONNX files (OpenVINO converts them
in memory at load time), so the weights, the int8 detector and the graph edits are shared.

`backend="auto"` picks OpenVINO on CPU when it is installed (less CPU per photo, docs/performance.md), ONNX
Runtime otherwise and always on CUDA. The engine's default is ONNX Runtime: OpenVINO's words differ
slightly (its int8 detector arithmetic), and accuracy comes first.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "openvino")
OPENVINO_PROVIDER = "OpenVINO-CPU"  # what OpenVINOSession.get_providers() reports


class ModelInput(Protocol):
    name: str


class Session(Protocol):
    """The part of `onnxruntime.InferenceSession` the engine uses; every backend provides it."""

    def get_inputs(self) -> list[ModelInput]: ...
    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...
    def get_providers(self) -> list[str]: ...


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


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


@dataclass(frozen=True)
class _Input:
    name: str


class OpenVINOSession:
    """An OpenVINO compiled model that answers like an ONNX Runtime session (see `Session`).

    One infer request per calling thread: the engine runs images on worker threads, and OpenVINO's
    requests are not shareable while they run. `streams` parallel streams let those requests run at once,
    each on `threads // streams` cores (the same layout as ONNX Runtime's worker threads).
    """

    def __init__(self, model: bytes | Path, *, threads: int, streams: int) -> None:
        import openvino as ov

        core = _core()
        if isinstance(model, Path):
            ov_model = core.read_model(str(model))
        else:
            ov_model = core.read_model(model=model, weights=ov.Tensor(np.empty(0, np.uint8)))
        config = {
            "INFERENCE_NUM_THREADS": max(1, threads),
            "NUM_STREAMS": max(1, streams),
            # f32 everywhere: bf16 (OpenVINO's default on CPUs with bf16 units) changes the words read.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self._compiled = core.compile_model(ov_model, "CPU", config)
        self._inputs = [_Input(port.get_any_name()) for port in self._compiled.inputs]
        self._outputs = self._compiled.outputs
        self._local = threading.local()

    def get_inputs(self) -> list[_Input]:
        return list(self._inputs)

    def get_providers(self) -> list[str]:
        return [OPENVINO_PROVIDER]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer(feeds)
        # Copies: the request's output buffers are reused by its next call.
        return [np.array(results[port], copy=True) for port in self._outputs]


_CORE = None
_CORE_LOCK = threading.Lock()


def _core():  # -> openvino.Core, one per process (it holds the plugin and its thread pools)
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE
