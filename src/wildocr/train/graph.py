"""An ONNX graph as a trainable torch module, and trained values written back into the same graph.

Fine-tuning keeps the shipped architecture exactly (no more inference time per photo): the module runs the
graph's own nodes in order, its float weights become `nn.Parameter`s and batch-norm statistics buffers,
and `export` writes the trained tensors into a copy of the stock graph's initializers, so the exported
file has the stock file's nodes, inputs, outputs and metadata (the recognizer's charset).
Only the ops the PP-OCR det/rec graphs use are implemented: an unknown op is refused when the module is
built, not in the middle of a training run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

# Inputs of these ops that hold weights worth training (index of the node's input).
_TRAINABLE_SLOTS = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "BatchNormalization": (1, 2),
    "MatMul": (0, 1),
    "Add": (0, 1),
    "Mul": (0, 1),
    "Sub": (0, 1),
}


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _same_pads(
    size: tuple[int, ...], kernel: list[int], strides: list[int], dilations: list[int]
) -> list[int]:
    """F.pad order (last axis first) for auto_pad=SAME_UPPER: the extra pixel goes at the end."""
    pads: list[int] = []
    for n, k, s, d in reversed(list(zip(size, kernel, strides, dilations, strict=True))):
        out = math.ceil(n / s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _explicit_pads(pads: list[int]) -> list[int]:
    """ONNX pads (begins then ends) → F.pad order (last axis first)."""
    half = len(pads) // 2
    out: list[int] = []
    for axis in reversed(range(half)):
        out += [pads[axis], pads[axis + half]]
    return out


class OnnxModule(nn.Module):
    """Runs an ONNX graph's nodes with torch ops; float weights are parameters, BN statistics buffers.

    `log_output`: the graph's final Softmax yields log-probabilities instead (a CTC loss wants them; the
    log of a softmax underflows where log_softmax does not). `update_batch_norm`: in training mode,
    normalise with the batch's statistics and update the running ones (off by default: frozen).
    """

    def __init__(self, model: onnx.ModelProto, log_output: bool = False) -> None:
        super().__init__()
        # Fine-tuning keeps batch-norm statistics frozen by default: with small batches of padded crops
        # the batch's statistics differ so much from the running ones that the first step of training
        # mode alone wrecks a recognizer that reads the batch perfectly in eval mode.
        self.update_batch_norm = False
        graph = model.graph
        self.nodes = list(graph.node)
        self.input_name = graph.input[0].name
        self.output_names = [o.name for o in graph.output]
        self.log_output = log_output
        for node in self.nodes:
            if node.op_type not in _OPS:
                raise NotImplementedError(
                    f"ONNX op {node.op_type!r} ({node.name}) has no torch equivalent here"
                )
        arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        alias = {n.output[0]: n.input[0] for n in self.nodes if n.op_type == "Identity"}

        def source(name: str) -> str:
            while name in alias:
                name = alias[name]
            return name

        trainable: set[str] = set()
        stats: set[str] = set()
        for node in self.nodes:
            for slot in _TRAINABLE_SLOTS.get(node.op_type, ()):
                if slot < len(node.input) and node.input[slot]:
                    src = source(node.input[slot])
                    if src in arrays and arrays[src].dtype == np.float32 and arrays[src].size > 1:
                        trainable.add(src)
            if node.op_type == "BatchNormalization":
                stats.update(source(name) for name in node.input[3:5])
        # ParameterDict keys may not contain dots: keep a map from ONNX names to module keys.
        self.keys = {name: f"p{i}" for i, name in enumerate(arrays)}
        self.params = nn.ParameterDict()
        self.constants: dict[str, Tensor] = {}
        for name, array in arrays.items():
            tensor = torch.from_numpy(np.array(array, copy=True))
            if name in trainable:
                self.params[self.keys[name]] = nn.Parameter(tensor)
            elif name in stats:
                self.register_buffer(self.keys[name], tensor)
            else:
                self.constants[name] = tensor
        self.trained_names = sorted(trainable | stats)

    def tensor(self, name: str) -> Tensor:
        """An initializer as the module holds it now (trained, or a constant)."""
        key = self.keys[name]
        if key in self.params:
            return self.params[key]
        if key in self._buffers:
            buffer = self._buffers[key]
            assert buffer is not None
            return buffer
        return self.constants[name]

    def forward(self, x: Tensor) -> Tensor:
        env: dict[str, Tensor] = {self.input_name: x}
        last = self.output_names[0]
        for node in self.nodes:
            ins = [self._value(env, name) if name else None for name in node.input]
            if node.op_type == "Softmax" and self.log_output and node.output[0] == last:
                out = _softmax(ins, _attrs(node), log=True)
            elif node.op_type == "BatchNormalization":
                out = self._batch_norm(ins, _attrs(node))
            else:
                out = _OPS[node.op_type](ins, _attrs(node))
            env[node.output[0]] = out
        return env[last]

    def _value(self, env: dict[str, Tensor], name: str) -> Tensor:
        if name in env:
            return env[name]
        value = self.tensor(name)
        return value.to(env[self.input_name].device) if value.device != env[self.input_name].device else value

    def _batch_norm(self, ins: list[Any], attrs: dict[str, Any]) -> Tensor:
        x, scale, bias, mean, var = ins
        # ONNX momentum weighs the running value; torch's weighs the new batch.
        momentum = 1.0 - float(attrs.get("momentum", 0.9))
        return F.batch_norm(
            x,
            mean,
            var,
            scale,
            bias,
            self.training and self.update_batch_norm,
            momentum,
            float(attrs.get("epsilon", 1e-5)),
        )


def export(module: OnnxModule, base: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `base` whose trained initializers hold the module's values (nodes, I/O, metadata kept)."""
    model = onnx.ModelProto()
    model.CopyFrom(base)
    trained = set(module.trained_names)
    for init in model.graph.initializer:
        if init.name in trained:
            array = module.tensor(init.name).detach().cpu().numpy().astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model


def load(path: str | bytes, log_output: bool = False) -> tuple[OnnxModule, onnx.ModelProto]:
    model = onnx.load(path) if isinstance(path, str) else onnx.load_model_from_string(path)
    return OnnxModule(model, log_output=log_output), model


# ---------------------------------------------------------------- ops


def _conv(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x, w, b = ([*ins, None])[:3]
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides = list(a.get("strides", [1] * len(kernel)))
    dilations = list(a.get("dilations", [1] * len(kernel)))
    auto_pad = a.get("auto_pad", b"NOTSET")
    if auto_pad in (b"SAME_UPPER", b"SAME_LOWER"):
        pads = _same_pads(tuple(x.shape[2:]), kernel, strides, dilations)
        if auto_pad == b"SAME_LOWER":
            pads = [p for pair in zip(pads[1::2], pads[0::2], strict=True) for p in pair]
    else:
        pads = _explicit_pads(list(a.get("pads", [0] * 2 * len(kernel))))
    if any(pads):
        x = F.pad(x, pads)
    return F.conv2d(x, w, b, strides, 0, dilations, int(a.get("group", 1)))


def _conv_transpose(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x, w, b = ([*ins, None])[:3]
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise NotImplementedError("ConvTranspose with asymmetric pads")
    return F.conv_transpose2d(
        x,
        w,
        b,
        list(a.get("strides", [1, 1])),
        pads[:2],
        list(a.get("output_padding", [0, 0])),
        int(a.get("group", 1)),
        list(a.get("dilations", [1, 1])),
    )


def _max_pool(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x = ins[0]
    kernel = list(a["kernel_shape"])
    strides = list(a.get("strides", [1] * len(kernel)))
    if a.get("auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER"):
        pads = _same_pads(tuple(x.shape[2:]), kernel, strides, [1] * len(kernel))
    else:
        pads = _explicit_pads(list(a.get("pads", [0] * 2 * len(kernel))))
    if any(pads):
        x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool2d(x, kernel, strides, ceil_mode=bool(a.get("ceil_mode", 0)))


def _avg_pool(ins: list[Any], a: dict[str, Any]) -> Tensor:
    kernel = list(a["kernel_shape"])
    pads = list(a.get("pads", [0] * 2 * len(kernel)))
    if pads[:2] != pads[2:]:
        raise NotImplementedError("AveragePool with asymmetric pads")
    return F.avg_pool2d(
        ins[0],
        kernel,
        list(a.get("strides", kernel)),
        pads[:2],
        bool(a.get("ceil_mode", 0)),
        bool(a.get("count_include_pad", 0)),
    )


def _resize(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x = ins[0]
    if a.get("mode", b"nearest") != b"nearest" or a.get("coordinate_transformation_mode") not in (
        b"asymmetric",
        None,
    ):
        raise NotImplementedError(f"Resize {a}")
    sizes = ins[3] if len(ins) > 3 and ins[3] is not None and ins[3].numel() else None
    if sizes is not None:
        return F.interpolate(x, size=[int(s) for s in sizes.tolist()[2:]], mode="nearest")
    scales = [float(s) for s in ins[2].tolist()[2:]]
    return F.interpolate(x, scale_factor=scales, mode="nearest")


def _softmax(ins: list[Any], a: dict[str, Any], log: bool = False) -> Tensor:
    x = ins[0]
    axis = int(a.get("axis", 1)) % x.dim()
    fn = F.log_softmax if log else F.softmax
    if axis == x.dim() - 1:
        return fn(x, dim=-1)
    # Opset < 13: the input is seen as 2-D, [prod(shape[:axis]), prod(shape[axis:])].
    flat = x.reshape(*x.shape[:axis], -1)
    return fn(flat, dim=-1).reshape(x.shape)


def _reshape(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x, shape = ins
    dims = [int(d) for d in shape.tolist()]
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _slice(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x, starts, ends = ins[:3]
    axes = ins[3].tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = ins[4].tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts.tolist(), ends.tolist(), axes, steps, strict=True):
        if step != 1:
            raise NotImplementedError("Slice with steps other than 1")
        n = x.shape[axis]
        start = max(min(start + n if start < 0 else start, n), 0)
        end = max(min(end + n if end < 0 else end, n), 0)
        index[axis] = slice(start, end)
    return x[tuple(index)]


def _squeeze(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x = ins[0]
    axes = a.get("axes") or (ins[1].tolist() if len(ins) > 1 and ins[1] is not None else None)
    if axes is None:
        return x.squeeze()
    for axis in sorted((ax % x.dim() for ax in axes), reverse=True):
        x = x.squeeze(axis)
    return x


def _unsqueeze(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x = ins[0]
    axes = a.get("axes") or ins[1].tolist()
    rank = x.dim() + len(axes)
    for axis in sorted(ax % rank for ax in axes):
        x = x.unsqueeze(axis)
    return x


def _reduce_mean(ins: list[Any], a: dict[str, Any]) -> Tensor:
    axes = a.get("axes")
    keep = bool(a.get("keepdims", 1))
    if axes is None:
        return ins[0].mean() if not keep else ins[0].mean(dim=tuple(range(ins[0].dim())), keepdim=True)
    return ins[0].mean(dim=tuple(axes), keepdim=keep)


def _gather(ins: list[Any], a: dict[str, Any]) -> Tensor:
    x, index = ins
    axis = int(a.get("axis", 0)) % x.dim()
    if index.dim() == 0:
        return x.select(axis, int(index))
    return torch.index_select(x, axis, index.reshape(-1).long()).reshape(
        *x.shape[:axis], *index.shape, *x.shape[axis + 1 :]
    )


def _constant(ins: list[Any], a: dict[str, Any]) -> Tensor:
    value = a["value"]
    return torch.from_numpy(np.array(numpy_helper.to_array(value), copy=True))


def _cast(ins: list[Any], a: dict[str, Any]) -> Tensor:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(int(a["to"]))
    return ins[0].to(getattr(torch, np.dtype(dtype).name))


_OPS: dict[str, Callable[[list[Any], dict[str, Any]], Tensor]] = {
    "Identity": lambda i, a: i[0],
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "BatchNormalization": lambda i, a: i[0],  # replaced by OnnxModule._batch_norm (needs train/eval)
    "Add": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] / i[1],
    "Pow": lambda i, a: torch.pow(i[0], i[1]),
    "Sqrt": lambda i, a: torch.sqrt(i[0]),
    "Relu": lambda i, a: F.relu(i[0]),
    "Sigmoid": lambda i, a: torch.sigmoid(i[0]),
    "HardSigmoid": lambda i, a: torch.clamp(
        float(a.get("alpha", 0.2)) * i[0] + float(a.get("beta", 0.5)), 0.0, 1.0
    ),
    "Erf": lambda i, a: torch.erf(i[0]),
    "MaxPool": _max_pool,
    "AveragePool": _avg_pool,
    "GlobalAveragePool": lambda i, a: i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "Concat": lambda i, a: torch.cat(list(i), dim=int(a["axis"])),
    "ReduceMean": _reduce_mean,
    "Resize": _resize,
    "MatMul": lambda i, a: torch.matmul(i[0], i[1]),
    "Softmax": _softmax,
    "Reshape": _reshape,
    "Flatten": lambda i, a: i[0].reshape(int(np.prod(i[0].shape[: int(a.get("axis", 1))])), -1),
    "Transpose": lambda i, a: i[0].permute(*a["perm"]),
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Shape": lambda i, a: torch.tensor(list(i[0].shape), dtype=torch.int64),
    "Gather": _gather,
    "Constant": _constant,
    "Cast": _cast,
    "Clip": lambda i, a: torch.clamp(
        i[0], *(float(v) if v is not None else None for v in ([*i, None, None])[1:3])
    ),
}
