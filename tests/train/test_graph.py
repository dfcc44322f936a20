"""wildocr.train.graph: the stock ONNX graphs run as torch modules, and trained weights written back."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (PyTorch) is not installed")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from wildocr.engine.models import DET_MODEL, REC_MODEL, model_path  # noqa: E402
from wildocr.train.graph import OnnxModule, export, load  # noqa: E402


def _ort(model: onnx.ModelProto | str, x: np.ndarray) -> np.ndarray:
    source = model if isinstance(model, str) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(
    ("name", "shape"),
    [(DET_MODEL, (1, 3, 96, 160)), (DET_MODEL, (2, 3, 64, 32)), (REC_MODEL, (2, 3, 48, 160))],
)
def test_module_matches_onnx_runtime(name: str, shape: tuple[int, ...]) -> None:
    """Every node as ONNX Runtime runs it (SAME_UPPER padding included), at the engine's multiples of 32."""
    module, _ = load(str(model_path(name)))
    module.eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()
    theirs = _ort(str(model_path(name)), x)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shape"), [(DET_MODEL, (1, 3, 64, 96)), (REC_MODEL, (1, 3, 48, 96))])
def test_export_writes_trained_weights_into_the_stock_graph(name: str, shape: tuple[int, ...]) -> None:
    """After optimizer steps, ORT on the exported file gives the module's outputs; nodes, inputs, outputs
    and metadata (the recognizer's charset) are the stock file's."""
    module, base = load(str(model_path(name)))
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    for _ in range(2):
        optimizer.zero_grad()
        (module(x) - 1).square().mean().backward()
        optimizer.step()
    module.eval()
    with torch.no_grad():
        trained = module(x).numpy()
    exported = export(module, base)
    assert np.abs(_ort(exported, x.numpy()) - trained).max() < 1e-4
    assert np.abs(_ort(str(model_path(name)), x.numpy()) - trained).max() > 1e-4  # the weights did move
    assert [n.op_type for n in exported.graph.node] == [n.op_type for n in base.graph.node]
    assert exported.graph.input == base.graph.input and exported.graph.output == base.graph.output
    assert exported.metadata_props == base.metadata_props


def test_log_output_is_log_softmax_of_the_recognizer() -> None:
    module, _ = load(str(model_path(REC_MODEL)), log_output=True)
    plain, _ = load(str(model_path(REC_MODEL)))
    module.eval()
    plain.eval()
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 3, 48, 160)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(module(x).exp(), plain(x), atol=1e-5)


def test_batch_norm_statistics_are_frozen_unless_asked() -> None:
    module, _ = load(str(model_path(REC_MODEL)))
    before = {k: v.clone() for k, v in module.named_buffers()}
    assert before, "the recognizer has batch-norm statistics"
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 3, 48, 96)).astype(np.float32))
    module.train()
    module(x)
    assert all(torch.equal(before[k], v) for k, v in module.named_buffers())
    module.update_batch_norm = True
    module(x)
    assert not all(torch.equal(before[k], v) for k, v in module.named_buffers())


def test_unknown_op_is_refused_when_built() -> None:
    node = onnx.helper.make_node("Einsum", ["x", "x"], ["y"], equation="ij,ij->ij")
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])],
    )
    with pytest.raises(NotImplementedError, match="Einsum"):
        OnnxModule(onnx.helper.make_model(graph))
