"""Static shapes of every value of an ONNX graph for one fixed input shape, without weights.

ONNX shape inference alone stops at shape arithmetic it cannot propagate (the TorchScript
exporter computes `width // heads` with an integer Div on `Shape` outputs, and a Reshape fed by
that has no known output shape). So, as ONNX Runtime's constant folding does when it loads a
model, this folds every node whose inputs are known (Shape of a value with a static shape,
Constant, and integer/scalar arithmetic on those) into an initializer, infers again, and
repeats until nothing more folds. Weights are never needed: the graph is a skeleton whose
floating-point initializers keep their dims and type but no data.
"""

from __future__ import annotations

import math

import numpy as np

from .._optional import require
from ..errors import SparsebenchError, first_line

MAX_ROUNDS = 64
MAX_FOLDED_ELEMENTS = 1 << 16  # shape arithmetic is small; never materialise activations


def _onnx():
    return require("onnx", "onnx", "Reading ONNX models")


def skeleton(model):
    """A copy of `model` whose floating-point initializers keep dims and type but no data."""
    onnx = _onnx()
    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    floating.add(onnx.TensorProto.BFLOAT16)
    copy = onnx.ModelProto()
    copy.ir_version = model.ir_version
    copy.opset_import.extend(model.opset_import)
    graph = copy.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    for tensor in model.graph.initializer:
        if tensor.data_type in floating:
            tensor = onnx.TensorProto(
                name=tensor.name, data_type=tensor.data_type, dims=tensor.dims
            )
        graph.initializer.append(tensor)
    for sparse in model.graph.sparse_initializer:
        values = sparse.values
        graph.initializer.append(
            onnx.TensorProto(name=values.name, data_type=values.data_type, dims=sparse.dims)
        )
    return copy


def _has_data(tensor) -> bool:
    fields = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data")
    return math.prod(tensor.dims) == 0 or any(len(getattr(tensor, f)) for f in fields)


def _fix_input(model, name: str, input_shape: tuple[int, ...]) -> None:
    for value in model.graph.input:
        if value.name != name:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(input_shape):
            raise SparsebenchError(
                f"input shape {list(input_shape)} has {len(input_shape)} dimensions; "
                f"the ONNX model's input has {len(dims)}"
            )
        for dim, size in zip(dims, input_shape, strict=True):
            dim.Clear()
            dim.dim_value = int(size)


def _infer(model) -> tuple[object, dict[str, list[int]]]:
    onnx = _onnx()
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises several error types for inconsistent graphs
        raise SparsebenchError(f"ONNX shape inference failed: {first_line(exc)}") from exc
    graph = model.graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.HasField("tensor_type") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return model, shapes


def _evaluate(node, inputs: list, opset: int) -> list | None:
    """Run one node on known inputs with ONNX's reference evaluator (None if it cannot)."""
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(node, opsets={"": opset})
        feeds = {name: value for name, value in zip(node.input, inputs, strict=True) if name}
        return list(evaluator.run(None, feeds))
    except Exception:  # an op the reference evaluator lacks: leave the node unfolded
        return None


# ops whose output is no larger than their inputs put together: safe to fold when those are small
_SHAPE_ARITHMETIC = {
    "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Floor", "Ceil", "Cast", "Concat",
    "Gather", "Unsqueeze", "Squeeze", "Slice", "Reshape", "Identity", "Equal", "Less",
    "Greater", "Where", "Min", "Max", "Not", "And", "Or", "Sqrt", "ReduceProd", "Transpose",
}  # fmt: skip


def _small_result(node, known: dict, shapes: dict) -> bool:
    """Whether folding `node` stays small: shape arithmetic on small inputs, or every output
    already inferred to be small (so a `ConstantOfShape([1e9])` or `Range` is never run)."""
    sizes = [math.prod(known[n].dims) for n in node.input if n]
    if node.op_type in _SHAPE_ARITHMETIC and sum(sizes) <= MAX_FOLDED_ELEMENTS:
        return True
    outs = [shapes.get(n) for n in node.output if n]
    return bool(outs) and all(o is not None and math.prod(o) <= MAX_FOLDED_ELEMENTS for o in outs)


def _fold_round(model, shapes: dict, opset: int) -> bool:
    """Replace every node computable from known values by initializers; whether any was."""
    from onnx import numpy_helper

    graph = model.graph
    known = {t.name: t for t in graph.initializer if _has_data(t)}
    arrays: dict[str, np.ndarray] = {}

    def value(name: str):
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(known[name])
        return arrays[name]

    kept, folded = [], False
    for node in graph.node:
        outputs = None
        if node.op_type == "Shape" and node.input[0] in shapes:
            attrs = {a.name: a.i for a in node.attribute}
            shape = shapes[node.input[0]][attrs.get("start", 0) : attrs.get("end", None)]
            outputs = [np.array(shape, dtype=np.int64)]
        elif node.op_type != "Shape" and all(not n or n in known for n in node.input):
            if _small_result(node, known, shapes):  # checked before anything is evaluated
                outputs = _evaluate(node, [value(n) if n else None for n in node.input], opset)
        if outputs is None or any(np.size(o) > MAX_FOLDED_ELEMENTS for o in outputs):
            kept.append(node)
            continue
        for name, output in zip(node.output, outputs, strict=False):
            arrays[name] = np.asarray(output)
            known[name] = numpy_helper.from_array(arrays[name], name)
            graph.initializer.append(known[name])
        folded = True
    del graph.node[:]
    graph.node.extend(kept)
    return folded


def static_shapes(skeleton_model, input_name: str, input_shape: tuple[int, ...]) -> dict:
    """Value name -> static shape of every value the graph computes from `input_shape`."""
    onnx = _onnx()
    model = onnx.ModelProto()
    model.CopyFrom(skeleton_model)
    _fix_input(model, input_name, input_shape)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    shapes: dict[str, list[int]] = {}
    for _ in range(MAX_ROUNDS):
        model, found = _infer(model)
        shapes.update(found)
        if not _fold_round(model, shapes, opset):
            break
    return shapes
