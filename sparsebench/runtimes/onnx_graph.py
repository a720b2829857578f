"""What an ONNX graph says about its model: weights, their sparsity, and MACs per sample.

Weights are the initializers (dense or `sparse_initializer`) read by Conv, ConvTranspose, Gemm
and MatMul, followed through Transpose/Identity/Cast/Reshape (how exporters feed a Linear
weight to a MatMul). Layer names drop a trailing `.weight`, so a model exported with its
parameter names reports the same layers as PyTorch. Parameters are all floating-point
initializers except BatchNorm running statistics (buffers, not parameters, in PyTorch).

MACs follow `measure/macs.py`: Conv and ConvTranspose (weight elements x output positions, or
input positions for a transposed conv), Gemm and MatMul (M x K x N per matrix product, batch
dimensions multiplied in; also between two activations, as attention's QK^T and attention @ V),
BatchNormalization one per element, everything else zero, biases never. Effective MACs scale
an op reading a weight by that weight's density. Shapes come from ONNX shape inference on a
copy of the graph without weight data, with every graph input fixed to a concrete shape
(`count_onnx_macs` takes {input name: shape}, or one shape for the first input).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._optional import require
from ..errors import SparsebenchError
from ..measure.macs import MacsResult
from ..measure.sparsity import LayerSparsity, SparsitySummary
from ._onnx_shapes import InputShapes, bind_inputs, graph_inputs, skeleton, static_shapes

WEIGHT_OPS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (0, 1)}
PASS_THROUGH = ("Transpose", "Identity", "Cast", "Reshape")
_BN_STATISTICS = (3, 4)  # BatchNormalization inputs: X, scale, B, input_mean, input_var


def _onnx():
    return require("onnx", "onnx", "Reading ONNX models")


@dataclass
class TensorStats:
    """Shape and zeros of one initializer (dense or sparse)."""

    shape: list[int]
    nonzero: int
    floating: bool

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def density(self) -> float:
        return self.nonzero / self.numel if self.numel else 1.0


def initializer_stats(graph) -> dict[str, TensorStats]:
    """Shape, non-zeros and dtype class of every dense and sparse initializer."""
    _onnx()
    from onnx import numpy_helper

    stats = {}
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        floating = np.issubdtype(array.dtype, np.floating)
        stats[tensor.name] = TensorStats(list(array.shape), int(np.count_nonzero(array)), floating)
    for sparse in graph.sparse_initializer:
        values = numpy_helper.to_array(sparse.values)
        floating = np.issubdtype(values.dtype, np.floating)
        stats[sparse.values.name] = TensorStats(
            list(sparse.dims), int(np.count_nonzero(values)), floating
        )
    return stats


def weight_names(graph, initializers) -> dict[int, str]:
    """Node index -> name of the weight initializer it multiplies by (Conv/Gemm/MatMul)."""
    producers = {out: node for node in graph.node for out in node.output}

    def resolve(name: str) -> str | None:
        seen = 0
        while name not in initializers and name in producers and seen < 8:
            node = producers[name]
            if node.op_type not in PASS_THROUGH or not node.input:
                return None
            name, seen = node.input[0], seen + 1
        return name if name in initializers else None

    weights = {}
    for index, node in enumerate(graph.node):
        for slot in WEIGHT_OPS.get(node.op_type, ()):
            if slot < len(node.input) and (found := resolve(node.input[slot])) is not None:
                weights[index] = found
                break
    return weights


def layer_name(initializer: str) -> str:
    """'features.0.weight' -> 'features.0' (the PyTorch module name); others unchanged."""
    return initializer.removesuffix(".weight")


@dataclass
class GraphSummary:
    """Everything the runtime needs from the graph, without holding the weight data."""

    sparsity: SparsitySummary
    densities: dict[int, tuple[str, float]]  # node index -> (layer name, density)
    skeleton: Any  # the ModelProto with float initializers emptied (for shape inference)
    input_name: str  # the first graph input
    inputs: list = field(default_factory=list)  # graph_inputs(): (name, dims, element type)

    @property
    def input_names(self) -> list[str]:
        """Every graph input, in the graph's order."""
        return [name for name, _, _ in self.inputs] or [self.input_name]

    @classmethod
    def from_model(cls, model) -> GraphSummary:
        """Read weights and sparsity from `model` and keep a data-free copy for MACs."""
        graph = model.graph
        stats = initializer_stats(graph)
        weights = weight_names(graph, stats)
        kinds = {name: graph.node[index].op_type for index, name in reversed(weights.items())}
        order = {name: i for i, name in enumerate(stats)}  # the state_dict order, if exported
        layers = [
            LayerSparsity(layer_name(n), kinds[n], stats[n].shape, stats[n].numel, stats[n].nonzero)
            for n in sorted(kinds, key=order.__getitem__)
        ]
        buffers = {
            node.input[i]
            for node in graph.node
            if node.op_type == "BatchNormalization"
            for i in _BN_STATISTICS
            if i < len(node.input)
        }
        params = [s for name, s in stats.items() if s.floating and name not in buffers]
        summary = SparsitySummary(
            layers=layers,
            params=sum(s.numel for s in params),
            nonzero_params=sum(s.nonzero for s in params),
        )
        densities = {i: (layer_name(n), stats[n].density) for i, n in weights.items()}
        inputs = graph_inputs(model)
        if not inputs:
            raise SparsebenchError("the ONNX model has no inputs")
        return cls(summary, densities, skeleton(model), inputs[0][0], inputs)


def graph_input(model):
    """The single graph input that is not an initializer (SparsebenchError otherwise);
    `graph_inputs` lists them all."""
    constant = {t.name for t in model.graph.initializer}
    constant |= {t.values.name for t in model.graph.sparse_initializer}
    inputs = [i for i in model.graph.input if i.name not in constant]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise SparsebenchError(
            f"the ONNX model has {len(inputs)} inputs ({names}); sparsebench runs models "
            "with one input tensor"
        )
    return inputs[0]


def _attribute(node, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return attr.i
    return default


def _matmul_macs(a: list[int], b: list[int]) -> int:
    """numpy.matmul semantics: 1-D operands get a dimension, batch dimensions broadcast."""
    a, b = (a if len(a) > 1 else [1, *a]), (b if len(b) > 1 else [*b, 1])
    batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    return math.prod(batch) * a[-2] * a[-1] * b[-1]


def node_macs(node, shapes: dict[str, list[int]]) -> int:
    """Dense MACs of one node under the convention above (0 for ops that count nothing)."""
    op = node.op_type
    if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization"):
        return 0
    needed = node.input[:2] if op != "BatchNormalization" else node.output[:1]
    missing = [n for n in needed if n not in shapes]
    if missing:
        raise SparsebenchError(
            f"cannot count MACs of {op} node '{node.name}': no static shape for {missing[0]}"
        )
    if op == "BatchNormalization":
        return math.prod(shapes[node.output[0]])
    a, b = shapes[node.input[0]], shapes[node.input[1]]
    if op == "Conv":
        return math.prod(b) * math.prod(shapes[node.output[0]][2:]) * shapes[node.output[0]][0]
    if op == "ConvTranspose":  # torch counts transposed convs over the input positions
        return math.prod(b) * math.prod(a[2:]) * a[0]
    if op == "Gemm":
        m, k = (a[1], a[0]) if _attribute(node, "transA", 0) else (a[0], a[1])
        n = b[0] if _attribute(node, "transB", 0) else b[1]
        return m * k * n
    return _matmul_macs(a, b)


def count_onnx_macs(
    summary: GraphSummary, inputs: InputShapes, batch: int | None = None
) -> MacsResult:
    """Dense and effective MACs per sample of the graph run on inputs of these shapes.

    `inputs` is {input name: shape} (dims left out of one input are bound through the symbols
    it shares with another), or one shape for the first graph input. Per sample means divided
    by `batch`, by default the first dimension of the first graph input."""
    bound = bind_inputs(summary.skeleton, inputs)
    shapes = static_shapes(summary.skeleton, bound)
    dense, effective, per_layer = 0, 0.0, {}
    for index, node in enumerate(summary.skeleton.graph.node):
        macs = node_macs(node, shapes)
        dense += macs
        name, density = summary.densities.get(index, (None, 1.0))
        effective += macs * density
        if name is not None:
            per_layer[name] = per_layer.get(name, 0) + macs
    if batch is None:
        first = bound.get(summary.input_name, ())
        batch = first[0] if first else 1
    batch = batch if batch > 0 else 1
    return MacsResult(
        dense=dense // batch,
        effective=round(effective / batch),
        per_layer={name: macs // batch for name, macs in per_layer.items()},
    )
