"""Bounds on what a foreign ONNX graph may make ONNX Runtime allocate or repeat.

ONNX runs no Python code, but a tiny hostile graph can ask for gigabytes (`ConstantOfShape`
of a huge constant, a sparse initializer of huge dims) or a near-endless `Loop`. Before a
session is opened, the graph's shapes are inferred for the fixed input and any value larger
than MAX_VALUE_ELEMENTS, any sparse initializer of that dense size and any `Loop` without a
small constant trip count is refused in one line.
"""

from __future__ import annotations

import math

from ..errors import SparsebenchError, first_line
from ._onnx_shapes import skeleton

MAX_VALUE_ELEMENTS = 2**28  # 1 GiB of float32 in one tensor: far above any real activation
MAX_TRIP_COUNT = 10**6


def check_graph_bounds(model_proto, input_shape: tuple[int, ...], path) -> None:
    """Refuse a graph whose values, sparse initializers or loops exceed the bounds above."""
    graph = model_proto.graph
    for sparse in graph.sparse_initializer:
        if math.prod(sparse.dims) > MAX_VALUE_ELEMENTS:
            raise SparsebenchError(f"{path}: sparse initializer of dims {list(sparse.dims)}")
    constants = {t.name: t for t in graph.initializer}
    for node in _nodes(graph):
        if node.op_type == "Loop":
            _check_trip_count(node, constants, path)
    for name, dims in _inferred(model_proto, input_shape, path).items():
        if math.prod(dims) > MAX_VALUE_ELEMENTS:
            raise SparsebenchError(
                f"{path}: value '{name}' would hold {math.prod(dims):,} elements ({dims}); refused"
            )


def _nodes(graph):
    """Every node, those inside subgraphs (Loop/If/Scan bodies) included."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _nodes(sub)


def _check_trip_count(node, constants: dict, path) -> None:
    from onnx import numpy_helper

    name = node.input[0] if node.input else ""
    if not name or name not in constants:
        raise SparsebenchError(f"{path}: a Loop without a constant trip count; refused")
    count = int(numpy_helper.to_array(constants[name]).reshape(-1)[0])
    if count > MAX_TRIP_COUNT:
        raise SparsebenchError(f"{path}: a Loop of {count:,} iterations; refused")


def _inferred(model_proto, input_shape, path) -> dict[str, list[int]]:
    import onnx

    model = skeleton(model_proto)  # dims and types without the weights' data
    first = model.graph.input[0] if model.graph.input else None
    dims = first.type.tensor_type.shape.dim if first is not None else []
    for axis, dim in enumerate(dims):  # the given shape, else 1 for every dynamic dimension
        size = input_shape[axis] if len(input_shape) == len(dims) else (dim.dim_value or 1)
        dim.Clear()
        dim.dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # an inconsistent graph: ONNX Runtime will say so itself
        raise SparsebenchError(f"cannot read ONNX model {path}: {first_line(exc)}") from exc
    shapes = {}
    for value in (*inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.HasField("tensor_type") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes
