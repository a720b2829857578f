"""Static shapes of every value of an ONNX graph for fixed input shapes, without weights.

Every graph input is bound to a concrete shape (`bind_inputs`: a mapping {input name: shape};
a plain tuple still means the shape of the first input, and dimensions an input leaves open
take the size its symbol, e.g. `batch` or `sequence`, has in another input). Then:

1. ONNX shape inference, then again with data propagation where that cannot grow large
   (`_data_prop_is_bounded`: ONNX keeps the contents of every integer value it propagates,
   with no limit of its own);
2. as ONNX Runtime's constant folding does when it loads a model, every node whose inputs are
   known (Shape of a value with a static shape, Constant, and small integer arithmetic on
   those) is folded into an initializer, and inference runs again, until nothing more folds.
   Before each round the value_info entries that could hold stale symbols are dropped: a value
   folded into an initializer, or one whose dims were symbolic, is inferred afresh (a kept
   entry shadows what the new constants say: a symbol such as `unk__0`, made up before the
   position ids of a transformer were folded, would otherwise run through the whole graph);
3. if values are still symbolic: ONNX Runtime's symbolic shape inference (when onnxruntime
   and sympy import; bounded here, see `_onnxruntime_shapes`), then a unification of the
   symbols left (an elementwise op that broadcasts a symbol against 1s equals it, one against
   a size other than 1 is that size; a MatMul's inner dims agree; a Reshape keeps its element
   count).

Weights are never needed: the graph is a skeleton whose floating-point initializers keep
their dims and type but no data. No node is ever evaluated unless its result is known to be
small beforehand (`_small_result`): these graphs come from strangers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .._optional import require
from ..errors import SparsebenchError, first_line

MAX_ROUNDS = 64
MAX_FOLDED_ELEMENTS = 1 << 16  # shape arithmetic is small; never materialise activations
MAX_PROPAGATED_ELEMENTS = 1 << 18  # all integer values ONNX's data propagation may hold
MAX_SYMBOLIC_ELEMENTS = 1 << 10  # one value's data in onnxruntime's symbolic inference
MAX_RANK = 64  # of a value whose rank is the length of a shape input (Reshape, Expand)
MAX_PASSES = 4  # of folding after the symbolic step found more

InputShapes = Mapping[str, Sequence[int]] | Sequence[int]


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


# ---------------------------------------------------------------------------------------------
# graph inputs and their binding


def graph_inputs(model) -> list[tuple[str, list[int | str | None] | None, str]]:
    """(name, dims, element type) of every graph input that is not an initializer, in order.

    dims holds an int for a fixed dimension, the symbol's name for a named dynamic one and
    None for an anonymous one; dims is None when the graph declares no shape at all. The
    element type is ONNX's name in lower case ("float", "int64"), or the kind of a non-tensor
    input ("sequence", "map", "optional")."""
    onnx = _onnx()
    constant = {t.name for t in model.graph.initializer}
    constant |= {t.values.name for t in model.graph.sparse_initializer}
    found = []
    for value in model.graph.input:
        if value.name in constant:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            found.append((value.name, None, (kind or "unknown").removesuffix("_type")))
            continue
        tensor = value.type.tensor_type
        elem = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
        dims = None
        if tensor.HasField("shape"):
            dims = [_dim(d) for d in tensor.shape.dim]
        found.append((value.name, dims, elem))
    return found


def _dim(dim) -> int | str | None:
    if dim.HasField("dim_value"):
        return dim.dim_value
    if dim.HasField("dim_param") and dim.dim_param:
        return dim.dim_param
    return None


def bind_inputs(model, inputs: InputShapes, default: int | None = None) -> dict[str, tuple]:
    """The concrete shape of every graph input, from `inputs` (see the module docstring).

    A dimension no given shape binds is the graph's fixed size, else `default`; without a
    default, an unbound dynamic dimension is an error naming the input. With a default, a
    given shape of the wrong rank is ignored (the bounds check reads a hint, not an order)."""
    declared = graph_inputs(model)
    ranks = {name: dims for name, dims, _ in declared}
    if isinstance(inputs, Mapping):
        given = {str(name): tuple(int(s) for s in shape) for name, shape in inputs.items()}
        unknown = [name for name in given if name not in ranks]
        if unknown:
            names = ", ".join(ranks) or "none"
            raise SparsebenchError(
                f"the ONNX model has no input '{unknown[0]}' (its inputs: {names})"
            )
    else:
        shape = tuple(int(s) for s in inputs)
        given = {declared[0][0]: shape} if declared and (shape or default is None) else {}
    for name, shape in list(given.items()):
        dims = ranks[name]
        if dims is not None and len(dims) != len(shape):
            if default is not None:
                del given[name]
                continue
            raise SparsebenchError(
                f"input shape {list(shape)} has {len(shape)} dimensions; the ONNX model's "
                f"input '{name}' has {len(dims)}"
            )
    symbols: dict[str, int] = {}
    for name, shape in given.items():
        for dim, size in zip(ranks[name] or (), shape, strict=False):
            if isinstance(dim, str):
                symbols.setdefault(dim, size)
    bound = {}
    for name, dims, _ in declared:
        if name in given:
            bound[name] = given[name]
            continue
        if dims is None:
            if default is None:
                raise SparsebenchError(
                    f"no shape for ONNX input '{name}': the graph declares none; pass it"
                )
            continue
        shape = []
        for axis, dim in enumerate(dims):
            if isinstance(dim, int):
                shape.append(dim)
            elif isinstance(dim, str) and dim in symbols:
                shape.append(symbols[dim])
            elif default is not None:
                shape.append(default)
            else:
                raise SparsebenchError(
                    f"no shape for ONNX input '{name}': its dimension {axis} "
                    f"({dim or 'unnamed'}) is dynamic and no other input binds it; pass "
                    f"{{'{name}': shape}}"
                )
        bound[name] = tuple(shape)
    return bound


def _fix_inputs(model, bound: Mapping[str, tuple]) -> None:
    for value in model.graph.input:
        if value.name not in bound or not value.type.HasField("tensor_type"):
            continue
        shape = value.type.tensor_type.shape
        if len(shape.dim) != len(bound[value.name]):
            del shape.dim[:]
            for _ in bound[value.name]:
                shape.dim.add()
        for dim, size in zip(shape.dim, bound[value.name], strict=True):
            dim.Clear()
            dim.dim_value = int(size)


def _fix_input(model, name: str, input_shape: tuple[int, ...]) -> None:
    """One input fixed to `input_shape` (kept for callers of the single-input API)."""
    _fix_inputs(model, bind_inputs(model, {name: input_shape}))


# ---------------------------------------------------------------------------------------------
# inference and folding


def _drop_stale(model) -> None:
    """Drop the value_info that inference must redo: folded values and symbolic shapes."""
    graph = model.graph
    constant = {t.name for t in graph.initializer}
    keep = [
        v
        for v in graph.value_info
        if v.name not in constant
        and v.type.HasField("tensor_type")
        and v.type.tensor_type.HasField("shape")
        and all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)
    ]
    del graph.value_info[:]
    graph.value_info.extend(keep)


def _open_outputs(model) -> None:
    """Forget the symbols the graph's outputs declare (`batch`): inference fills them in."""
    for value in model.graph.output:
        if value.type.HasField("tensor_type"):
            for dim in value.type.tensor_type.shape.dim:
                if not dim.HasField("dim_value"):
                    dim.Clear()


def _infer(model, data_prop: bool = False) -> tuple[object, dict[str, list[int]]]:
    onnx = _onnx()
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=data_prop)
    except Exception as exc:  # onnx raises several error types for inconsistent graphs
        raise SparsebenchError(f"ONNX shape inference failed: {first_line(exc)}") from exc
    return model, _static(model)


def _infer_round(model, shapes: dict) -> tuple[object, dict[str, list[int]]]:
    """Inference without data propagation, then with it where that is known to stay small."""
    model, found = _infer(model)
    known = {**shapes, **found}
    if _missing(model, known) and _data_prop_is_bounded(model, known):
        model, found = _infer(model, data_prop=True)
    return model, found


_INTEGER = {2, 3, 4, 5, 6, 7, 9, 12, 13}  # TensorProto: uint8 ... int64, bool, uint32, uint64


def _data_prop_is_bounded(model, shapes: dict) -> bool:
    """Whether ONNX's data propagation stays small on `model`, inferred without it.

    It keeps the contents of the integer values it computes and has no limit of its own (22
    Concat nodes doubling one Shape ask it for 1.7 GB), so every integer value a node of the
    standard domain computes must have a static shape, all of them together at most
    MAX_PROPAGATED_ELEMENTS elements; subgraphs (Loop, If, Scan bodies) rule it out."""
    graph = model.graph
    types = {v.name: v.type for v in (*graph.value_info, *graph.output)}
    total = 0
    for node in graph.node:
        if _has_subgraph(node):
            return False
        if node.domain not in ("", "ai.onnx"):
            continue  # ONNX propagates no data through ops it does not know
        for name in node.output:
            if not name:
                continue
            kind = types.get(name)
            if kind is None or not kind.HasField("tensor_type"):
                return False
            if kind.tensor_type.elem_type not in _INTEGER:
                continue
            if name not in shapes:
                return False
            total += math.prod(shapes[name])
    return total <= MAX_PROPAGATED_ELEMENTS


def _static(model) -> dict[str, list[int]]:
    graph = model.graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.name in shapes or not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shapes[value.name] = [d.dim_value for d in tensor.shape.dim]
    return shapes


def _evaluate(node, inputs: list, opset: int) -> list | None:
    """Run one node on known inputs with ONNX's reference evaluator (None if it cannot)."""
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(node, opsets={"": opset})
        feeds = {name: value for name, value in zip(node.input, inputs, strict=True) if name}
        return list(evaluator.run(None, feeds))
    except Exception:  # an op the reference evaluator lacks: leave the node unfolded
        return None


# elementwise ops of shape arithmetic: the output is the inputs' broadcast shape
_BROADCAST = {
    "Add", "Sub", "Mul", "Div", "Mod", "Equal", "Less", "Greater", "LessOrEqual",
    "GreaterOrEqual", "Where", "Min", "Max", "And", "Or", "Xor",
}  # fmt: skip
# ops of shape arithmetic whose output is no larger than their inputs put together
_NO_LARGER = {
    "Neg", "Abs", "Floor", "Ceil", "Cast", "Concat", "Unsqueeze", "Squeeze", "Slice",
    "Reshape", "Identity", "Not", "Sqrt", "ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin",
    "Transpose", "Flatten", "Size", "Sign", "Reciprocal",
}  # fmt: skip
_SHAPE_ARITHMETIC = _BROADCAST | _NO_LARGER | {"Gather"}


def _result_bound(node, known: dict) -> int | None:
    """An upper bound on the elements `node` outputs, from its known inputs' dims alone."""
    dims = [tuple(known[n].dims) for n in node.input if n]
    if node.op_type in _NO_LARGER:
        return sum(math.prod(d) for d in dims)
    if node.op_type == "Gather" and len(dims) == 2:
        return math.prod(dims[0]) * math.prod(dims[1])
    if node.op_type in _BROADCAST:
        try:
            return math.prod(np.broadcast_shapes(*dims))
        except ValueError:
            return None
    return None


def _small_result(node, known: dict, shapes: dict) -> bool:
    """Whether folding `node` stays small: shape arithmetic whose output is bounded small by
    its inputs' dims, or every output already inferred to be small (so a
    `ConstantOfShape([1e9])`, a `Range` or a broadcast to a huge shape is never run)."""
    sizes = [math.prod(known[n].dims) for n in node.input if n]
    if node.op_type in _SHAPE_ARITHMETIC and sum(sizes) <= MAX_FOLDED_ELEMENTS:
        bound = _result_bound(node, known)
        if bound is not None and bound <= MAX_FOLDED_ELEMENTS:
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
        if node.op_type == "Shape" and node.domain in ("", "ai.onnx") and node.input[0] in shapes:
            attrs = {a.name: a.i for a in node.attribute}
            shape = shapes[node.input[0]][attrs.get("start", 0) : attrs.get("end", None)]
            outputs = [np.array(shape, dtype=np.int64)]
        elif (
            node.op_type != "Shape"
            and node.domain in ("", "ai.onnx")
            and all(not n or n in known for n in node.input)
            and _small_result(node, known, shapes)  # checked before anything is evaluated
        ):
            outputs = _evaluate(node, [value(n) if n else None for n in node.input], opset)
        if outputs is None or any(np.size(o) > MAX_FOLDED_ELEMENTS for o in outputs):
            kept.append(node)
            continue
        for name, output in zip(node.output, outputs, strict=False):
            if not name:
                continue
            arrays[name] = np.asarray(output)
            known[name] = numpy_helper.from_array(arrays[name], name)
            graph.initializer.append(known[name])
        folded = True
    del graph.node[:]
    graph.node.extend(kept)
    return folded


def _has_data(tensor) -> bool:
    fields = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data")
    return math.prod(tensor.dims) == 0 or any(len(getattr(tensor, f)) for f in fields)


def _missing(model, shapes: dict) -> list[str]:
    return [n for node in model.graph.node for n in node.output if n and n not in shapes]


# ---------------------------------------------------------------------------------------------
# what is left: onnxruntime's symbolic shape inference, then unification of symbols


def _onnxruntime_shapes(model, shapes: dict) -> dict[str, list[int]]:
    """Static shapes ONNX Runtime's symbolic shape inference finds beyond `shapes` ({} when
    onnxruntime or sympy is missing, when the graph has subgraphs, or when it fails).

    It computes shape data with sympy, unbounded: here it sees no initializer over
    MAX_SYMBOLIC_ELEMENTS (those, and the weights, become data-less inputs), gives up as soon
    as one value's data grows past that or a Reshape/Expand/ConstantOfShape/Unsqueeze would
    make a value of rank over MAX_RANK (one sympy symbol per dim), and never fills a large
    ConstantOfShape."""
    bounded = _bounded_symbolic()
    graph = model.graph
    if bounded is None or any(_has_subgraph(node) for node in graph.node):
        return {}
    onnx = _onnx()
    from onnx import helper

    copy = onnx.ModelProto()
    copy.ir_version = model.ir_version
    copy.opset_import.extend(model.opset_import)
    copy.graph.node.extend(graph.node)
    copy.graph.input.extend(graph.input)
    copy.graph.output.extend(graph.output)
    for tensor in graph.initializer:
        if _has_data(tensor) and math.prod(tensor.dims) <= MAX_SYMBOLIC_ELEMENTS:
            copy.graph.initializer.append(tensor)
        else:
            copy.graph.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    try:
        inference = bounded(int_max=2**31 - 1, auto_merge=False, guess_output_rank=False, verbose=0)
        inference._preprocess(copy)
        for _ in range(MAX_ROUNDS):
            if not inference.run_:
                break
            inference._infer_impl()
        inference._update_output_from_vi()
        result = _static(inference.out_mp_)
    except Exception:  # _TooMuchData, or its own asserts on graphs it cannot follow
        return {}
    return {name: dims for name, dims in result.items() if name not in shapes}


def _has_subgraph(node) -> bool:
    return any(a.HasField("g") or len(a.graphs) for a in node.attribute)


class _TooMuchData(Exception):
    """A value's shape data in onnxruntime's symbolic inference grew past the bound."""


_RANK_FROM_LENGTH = {"Reshape": 1, "Expand": 1, "ConstantOfShape": 0, "Unsqueeze": 1}


def _data_size(data) -> int:
    if isinstance(data, np.ndarray):
        return data.size
    if isinstance(data, list | tuple):
        return len(data)
    return 1


def _bounded_symbolic():
    """onnxruntime's SymbolicShapeInference with its shape data bounded (None if missing)."""
    try:
        import sympy  # noqa: F401  (it needs sympy)
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except Exception:  # not installed, or an onnxruntime without the tool
        return None

    class BoundedSymbolic(SymbolicShapeInference):
        """Stops once a value's data passes MAX_SYMBOLIC_ELEMENTS or a shape input is longer
        than MAX_RANK; upstream also fills the data of an int64 ConstantOfShape whatever its
        size: not here."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.dispatcher_ = {op: self._bounded(f) for op, f in self.dispatcher_.items()}

        def _bounded(self, infer):
            def run(node):
                slot = _RANK_FROM_LENGTH.get(node.op_type)
                if slot is not None and slot < len(node.input) and node.input[slot]:
                    length = self._get_shape(node, slot)  # made into that many symbols
                    if length is None or not all(isinstance(d, int) for d in length):
                        raise _TooMuchData(node.input[slot])
                    if math.prod(length) > MAX_RANK:
                        raise _TooMuchData(node.input[slot])
                infer(node)
                for name in node.output:
                    if _data_size(self.sympy_data_.get(name)) > MAX_SYMBOLIC_ELEMENTS:
                        raise _TooMuchData(name)

            return run

        def _infer_ConstantOfShape(self, node):  # noqa: N802
            from onnx import helper

            shape = self._try_get_value(node, 0)
            sizes = np.asarray(shape).reshape(-1).tolist() if shape is not None else None
            if sizes and all(isinstance(s, int | np.integer) for s in sizes):
                if math.prod(int(s) for s in sizes) > MAX_SYMBOLIC_ELEMENTS:
                    value = self.known_vi_[node.output[0]]
                    elem = value.type.tensor_type.elem_type
                    dims = [int(s) for s in sizes]
                    value.CopyFrom(helper.make_tensor_value_info(node.output[0], elem, dims))
                    return
            super()._infer_ConstantOfShape(node)

    return BoundedSymbolic


_SAME_SHAPE = {
    "Relu", "Gelu", "Erf", "Tanh", "Sigmoid", "Sqrt", "Neg", "Abs", "Exp", "Log", "Cast",
    "Identity", "Softmax", "LogSoftmax", "LayerNormalization", "Dropout", "Not", "IsNaN",
    "IsInf", "Clip", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus",
    "Reciprocal", "Floor", "Ceil", "Round", "Sign", "BatchNormalization",
    "InstanceNormalization", "CastLike", "Mish", "Celu", "ThresholdedRelu", "Sin", "Cos",
}  # fmt: skip
_ELEMENTWISE = _BROADCAST | {"Pow", "Sum", "Mean", "PRelu", "BitShift"}


class _Symbols:
    """Union-find of a graph's dims: symbols joined with each other and with sizes."""

    def __init__(self):
        self.parent: dict[str, str] = {}
        self.size: dict[str, int] = {}

    def find(self, symbol: str) -> str:
        root = symbol
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        self.parent[symbol] = root
        return root

    def value(self, dim) -> int | str | None:
        """A dim's size if known, else its symbol's root (None for an anonymous dim)."""
        if dim is None or isinstance(dim, int):
            return dim
        root = self.find(dim)
        return self.size.get(root, root)

    def join(self, a, b) -> bool:
        """Record that dims a and b are equal; whether anything new was learned."""
        a, b = self.value(a), self.value(b)
        if a is None or b is None or a == b:
            return False
        if isinstance(a, int) and isinstance(b, int):
            return False  # inconsistent: leave it to inference to complain
        if isinstance(a, int):
            a, b = b, a
        if isinstance(b, int):
            self.size[a] = b
        else:
            self.parent[a] = b
        return True


def _unified_shapes(model, shapes: dict) -> dict[str, list[int]]:
    """Static shapes found by unifying the symbols ONNX inference leaves (sound rules only)."""
    graph = model.graph
    dims: dict[str, list] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        if value.type.HasField("tensor_type") and tensor.HasField("shape"):
            dims[value.name] = [_dim(d) for d in tensor.shape.dim]
    dims.update({name: list(shape) for name, shape in shapes.items()})
    symbols = _Symbols()
    for _ in range(MAX_ROUNDS):
        learned = [_unify_node(node, dims, symbols) for node in graph.node]  # every node
        if not any(learned):
            break
    found = {}
    for name, shape in dims.items():
        sizes = [symbols.value(d) for d in shape]
        if name not in shapes and all(isinstance(s, int) for s in sizes):
            found[name] = sizes
    return found


def _unify_node(node, dims: dict, symbols: _Symbols) -> bool:
    """Apply what `node` says about its inputs' and outputs' dims; whether anything new."""
    op = node.op_type
    ins = [dims.get(n) if n else None for n in node.input]
    out = dims.get(node.output[0]) if node.output and node.output[0] else None
    if out is None or node.domain not in ("", "ai.onnx"):
        return False
    learned = False
    if op in _SAME_SHAPE and ins and ins[0] is not None and len(ins[0]) == len(out):
        for a, b in zip(ins[0], out, strict=True):
            learned |= symbols.join(a, b)
    elif op in _ELEMENTWISE and ins and all(s is not None for s in ins):
        learned |= _unify_broadcast([s for s in ins if s is not None], out, symbols)
    elif op == "MatMul" and len(ins) == 2 and all(s is not None and len(s) >= 2 for s in ins):
        a, b = ins
        learned |= symbols.join(a[-1], b[-2])
        if len(out) >= 2:
            learned |= symbols.join(a[-2], out[-2]) | symbols.join(b[-1], out[-1])
            learned |= _unify_broadcast([a[:-2], b[:-2]], out[:-2], symbols)
    elif op == "Reshape" and ins and ins[0] is not None:
        learned |= _unify_count(ins[0], out, symbols)
    return learned


def _unify_broadcast(ins: list, out: list, symbols: _Symbols) -> bool:
    learned = False
    for axis in range(1, len(out) + 1):
        at = [symbols.value(s[-axis]) if axis <= len(s) else 1 for s in ins]
        if any(d is None for d in at):
            continue
        sizes = {d for d in at if isinstance(d, int) and d != 1}
        rest = [d for d in at if not isinstance(d, int)]
        if len(sizes) == 1:  # a symbol here is that size or 1: only the output is known
            learned |= symbols.join(out[-axis], sizes.pop())
        elif not sizes and not rest:
            learned |= symbols.join(out[-axis], 1)
        elif not sizes and len(set(rest)) == 1:  # one symbol broadcast against 1s
            learned |= symbols.join(out[-axis], rest[0])
    return learned


def _unify_count(a: list, b: list, symbols: _Symbols) -> bool:
    """A Reshape keeps the element count: one symbol on one side, all else known, is solved."""
    for x, y in ((a, b), (b, a)):
        xs, ys = [symbols.value(d) for d in x], [symbols.value(d) for d in y]
        if all(isinstance(d, int) for d in xs):
            unknown = [d for d in ys if not isinstance(d, int)]
            if len(unknown) == 1 and unknown[0] is not None and ys.count(unknown[0]) == 1:
                known = math.prod(d for d in ys if isinstance(d, int))
                if known and math.prod(xs) % known == 0:
                    return symbols.join(unknown[0], math.prod(xs) // known)
    return False


# ---------------------------------------------------------------------------------------------


def static_shapes(
    skeleton_model, inputs: InputShapes | str, input_shape: Sequence[int] | None = None
) -> dict[str, list[int]]:
    """Value name -> static shape of every value the graph computes from its inputs' shapes.

    `inputs` is {input name: shape} for every graph input (dims an input leaves open are bound
    through the symbols it shares with the others), or a plain shape for the first input. The
    older call `static_shapes(model, input_name, input_shape)` still works."""
    if isinstance(inputs, str):
        inputs = {inputs: tuple(input_shape or ())}
    return infer_static(skeleton_model, bind_inputs(skeleton_model, inputs))[1]


def infer_static(skeleton_model, bound: Mapping[str, Sequence[int]], symbolic: bool = True):
    """(the inferred, folded copy of the model, value name -> static shape) for inputs bound
    to `bound` ({name: shape}, as `bind_inputs` gives). Steps 1-2 of the module docstring;
    step 3 too unless `symbolic` is False, its shapes then pinned into the graph and steps
    1-2 run again, as long as that finds more (at most MAX_PASSES times)."""
    onnx = _onnx()
    model = onnx.ModelProto()
    model.CopyFrom(skeleton_model)
    _fix_inputs(model, bound)
    _open_outputs(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    model, shapes = _fold_to_fixpoint(model, {}, opset)
    for _ in range(MAX_PASSES):
        if not symbolic or not _missing(model, shapes):
            break
        found = _onnxruntime_shapes(model, shapes)
        found.update(_unified_shapes(model, {**shapes, **found}))
        if not found:
            break
        shapes.update(found)
        pinned = onnx.ModelProto()
        pinned.CopyFrom(model)
        _pin(pinned, found)
        try:
            model, shapes = _fold_to_fixpoint(pinned, shapes, opset)
        except SparsebenchError:  # inference disagrees with a pinned shape: keep the last
            break
    return model, shapes


def _fold_to_fixpoint(model, shapes: dict, opset: int) -> tuple[object, dict]:
    shapes = dict(shapes)
    for _ in range(MAX_ROUNDS):
        _drop_stale(model)
        model, found = _infer_round(model, shapes)
        shapes.update(found)
        if not _fold_round(model, shapes, opset):
            break
    return model, shapes


def _pin(model, found: dict) -> None:
    """Write `found` into the graph's value_info, so inference and folding build on it."""
    graph = model.graph
    constant = {t.name for t in graph.initializer}
    for value in graph.value_info:
        if value.name in found and value.name not in constant:
            tensor = value.type.tensor_type
            del tensor.shape.dim[:]
            for size in found[value.name]:
                tensor.shape.dim.add().dim_value = int(size)
