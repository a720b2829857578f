"""Bounds on what a foreign ONNX graph may make ONNX Runtime allocate or repeat.

ONNX runs no Python code, but a tiny hostile graph can ask for gigabytes (`ConstantOfShape`
of a huge constant, a sparse initializer of huge dims) or a near-endless `Loop`. Before a
session is opened, the graph's shapes are inferred (with the folding of shape arithmetic of
`_onnx_shapes`, which evaluates only nodes known to be small) for its inputs bound to the given
shapes ({input name: shape}, or one shape for the first input; a dynamic dimension nothing
binds reads as 1), and any input or value larger than MAX_VALUE_ELEMENTS (or whose known
dimensions alone are), any sparse initializer of that dense size and any `Loop` without a
small constant trip count is refused in one line. Initializers are data already in the file
and are not bounded here.
"""

from __future__ import annotations

import math

from ..errors import SparsebenchError
from ._onnx_shapes import InputShapes, bind_inputs, infer_static, skeleton

MAX_VALUE_ELEMENTS = 2**28  # 1 GiB of float32 in one tensor: far above any real activation
MAX_TRIP_COUNT = 10**6


def check_graph_bounds(model_proto, inputs: InputShapes, path) -> None:
    """Refuse a graph whose values, sparse initializers or loops exceed the bounds above.

    `inputs`: {input name: shape} for the graph inputs, or one shape (possibly empty) for the
    first; what it leaves open is bound through shared symbols, else to 1."""
    graph = model_proto.graph
    for sparse in graph.sparse_initializer:
        if math.prod(sparse.dims) > MAX_VALUE_ELEMENTS:
            raise SparsebenchError(f"{path}: sparse initializer of dims {list(sparse.dims)}")
    constants = {t.name: t for t in graph.initializer}
    for node in _nodes(graph):
        if node.op_type == "Loop":
            _check_trip_count(node, constants, path)
    found = _inferred(model_proto, inputs, path)
    names = {value.name for value in graph.input}
    for name, (dims, exact) in sorted(found.items(), key=lambda item: item[0] not in names):
        size = math.prod(dims)
        if size <= MAX_VALUE_ELEMENTS:
            continue
        if name in names:  # the inputs first: a huge input makes every value huge
            raise SparsebenchError(
                f"{path}: input '{name}' of shape {dims} is implausibly large ({size:,} "
                "elements); refused"
            )
        at_least = "" if exact else "at least "
        raise SparsebenchError(
            f"{path}: value '{name}' would hold {at_least}{size:,} elements ({dims}); refused"
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


def _inferred(model_proto, inputs: InputShapes, path) -> dict[str, tuple[list[int], bool]]:
    """Value name -> (dims, whether exact) of the graph's inputs and computed values; where a
    dim stays symbolic the dims hold 1 for it (a lower bound) and exact is False."""
    model = skeleton(model_proto)  # dims and types without the weights' data
    try:
        bound = bind_inputs(model, inputs, default=1)
        inferred, shapes = infer_static(model, bound, symbolic=False)
    except SparsebenchError as exc:  # an inconsistent graph: ONNX Runtime will say so itself
        raise SparsebenchError(f"cannot read ONNX model {path}: {exc}") from exc
    constant = {t.name for t in model_proto.graph.initializer}
    constant |= {t.values.name for t in model_proto.graph.sparse_initializer}
    found = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.name in constant or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        known = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
        found[value.name] = (known, all(d.HasField("dim_value") for d in dims))
    for name, dims in shapes.items():
        if name not in constant:
            found[name] = (list(dims), True)
    return found
