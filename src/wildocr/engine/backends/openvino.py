"""OpenVINO sessions (CPU): the same ONNX files, converted in memory at load time."""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wildocr.engine.models import ModelFileError

if TYPE_CHECKING:
    from wildocr.engine.backends import SessionOptions

OPENVINO_PROVIDER = "OpenVINO-CPU"  # what OpenVINOSession.get_providers() reports


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def create_session(model: bytes | Path, options: SessionOptions) -> OpenVINOSession:
    """An OpenVINO session on `options.intra_op_threads` cores (0: all) split into `options.streams`."""
    try:
        return OpenVINOSession(
            model, threads=options.intra_op_threads or (os.cpu_count() or 1), streams=options.streams
        )
    except Exception as exc:  # corrupt protobuf, wrong file
        raise ModelFileError(
            f"cannot load model {model if isinstance(model, Path) else '<bytes>'} in OpenVINO: {exc}"
        ) from exc


@dataclass(frozen=True)
class _Input:
    name: str


class OpenVINOSession:
    """An OpenVINO compiled model that answers like an ONNX Runtime session (see `backends.Session`).

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


_CORE: Any = None  # openvino.Core, one per process (it holds the plugin and its thread pools)
_CORE_LOCK = threading.Lock()


def _core() -> Any:
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE
