"""What a TensorRT build will do, decided without TensorRT: precision flags, 2:4 weights, batch.

`plan_build` turns the export options and the 2:4 scan of the ONNX weights into the builder
flags (names of `tensorrt.BuilderFlag` members), the verification tolerance and the batch
profile, so all of it is testable on a machine without TensorRT or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._optional import require
from ..errors import SparsebenchError
from ._semi24_pattern import GROUP, is_24_sparse
from .base import ExportConfig

DEFAULT_DTYPE = "float16"
MAX_BATCH = 64  # upper end of the dynamic-batch optimization profile (at least the given batch)
# --dtype -> (flags set, flags cleared, relative verification tolerance)
PRECISIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], float]] = {
    "float32": ((), ("TF32",), 1e-4),  # strict FP32: TF32 off
    "float16": (("FP16",), (), 1e-2),
    "bfloat16": (("BF16",), (), 1e-2),
    # post-training INT8 (entropy calibration); FP16 for the layers left unquantised
    "int8": (("INT8", "FP16"), (), 1e-1),
}
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")  # the layers TensorRT can run with 2:4 sparse weights


@dataclass(frozen=True)
class BuildPlan:
    """Builder flags, sparsity decision, tolerance and batch range of one TensorRT build."""

    dtype: str
    flags: tuple[str, ...]
    cleared: tuple[str, ...]
    tolerance: float
    sparse_weights: bool
    sparse_reason: str
    batch: tuple[int, int, int]  # (min, opt, max) of the optimization profile
    calibration: str | None = None  # dataset spec whose train split calibrates INT8
    notes: list[str] = field(default_factory=list)

    @property
    def int8(self) -> bool:
        return "INT8" in self.flags

    @property
    def opt(self) -> int:
        """The batch size the engine is tuned for (and INT8 calibrates with)."""
        return self.batch[1]


def _sparse_decision(config: ExportConfig, weights_24: dict[str, bool | None]) -> tuple[bool, str]:
    if config.options.sparse_weights is not None:
        flag = "--sparse-weights" if config.options.sparse_weights else "--no-sparse-weights"
        return (
            config.options.sparse_weights,
            f"{'on' if config.options.sparse_weights else 'off'} ({flag})",
        )
    hits = sorted(name for name, ok in weights_24.items() if ok)
    total = len(weights_24)
    if hits:
        shown = ", ".join(hits[:3]) + (", ..." if len(hits) > 3 else "")
        return True, f"on (auto): {len(hits)} of {total} Conv/Gemm/MatMul weights are 2:4 ({shown})"
    return False, f"off (auto): none of {total} Conv/Gemm/MatMul weights is 2:4 sparse"


def check_options(config: ExportConfig) -> str:
    """The precision `config` asks for (None = float16); errors for options that cannot work."""
    dtype = config.options.dtype or DEFAULT_DTYPE
    if dtype not in PRECISIONS:
        raise SparsebenchError(
            f"tensorrt supports --dtype {', '.join(PRECISIONS)} (default {DEFAULT_DTYPE}), "
            f"not {dtype}"
        )
    if dtype == "int8" and not config.data:
        raise SparsebenchError(
            "INT8 needs calibration data: pass --data (a dataset name or path; its train split "
            "calibrates, its test split verifies)"
        )
    return dtype


def plan_build(config: ExportConfig, weights_24: dict[str, bool | None], batch: int) -> BuildPlan:
    """The build for `config`, given the 2:4 scan of the weights and the batch size."""
    dtype = check_options(config)
    flags, cleared, tolerance = PRECISIONS[dtype]
    sparse, reason = _sparse_decision(config, weights_24)
    notes = []
    if sparse:
        flags = (*flags, "SPARSE_WEIGHTS")
        if dtype == "float32":
            notes.append("TensorRT documents 2:4 sparse tactics for FP16 and INT8 layers only")
    if batch < 1:
        raise SparsebenchError(f"batch size must be >= 1, not {batch}")
    return BuildPlan(
        dtype=dtype,
        flags=flags,
        cleared=cleared,
        tolerance=tolerance,
        sparse_weights=sparse,
        sparse_reason=reason,
        batch=(1, batch, max(MAX_BATCH, batch)),
        calibration=config.data if dtype == "int8" else None,
        notes=notes,
    )


def batch_profile(plan: BuildPlan, onnx_batch: int | None) -> tuple[int, int, int]:
    """The profile's batch range: the plan's when the ONNX batch axis is dynamic, else fixed."""
    if onnx_batch is None or onnx_batch < 1:
        return plan.batch
    if onnx_batch != plan.batch[1]:
        raise SparsebenchError(
            f"the ONNX model has a fixed batch of {onnx_batch}, not {plan.batch[1]}: export it "
            f"with a dynamic batch axis or pass --batch-size {onnx_batch}"
        )
    return (onnx_batch, onnx_batch, onnx_batch)


def _rows(weight: torch.Tensor, op: str, stored_nk: bool) -> torch.Tensor | None:
    """`weight` as a matrix whose last axis is the input (reduction) axis TensorRT prunes 2:4."""
    if op == "Conv":  # (K, C, *kernel): groups of 4 input channels at every (k, position)
        return weight.movedim(1, -1).reshape(-1, weight.shape[1])
    if weight.dim() != 2:  # a batched MatMul operand, not a layer weight
        return None
    return weight if stored_nk else weight.T


def _weight_source(name: str, initializers: dict, producers: dict) -> tuple[str | None, bool]:
    """(initializer name, whether it passed through a 2-D Transpose) feeding input `name`."""
    if name in initializers:
        return name, False
    node = producers.get(name)
    if node is not None and node.op_type == "Transpose" and node.input[0] in initializers:
        return node.input[0], True
    return None, False


def _stored_nk(node, via_transpose: bool) -> bool:
    """Whether the initializer is stored (out, in): Gemm transB=1 is; MatMul / transB=0 store
    (in, out); a Transpose between the initializer and the node swaps the answer."""
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return (node.op_type == "Gemm" and trans_b) != via_transpose


def scan_onnx_weights(path: str | Path) -> dict[str, bool | None]:
    """Each Conv/Gemm/MatMul weight initializer of an ONNX file: 2:4 sparse along its input axis?

    None marks a weight whose input axis does not split into groups of 4 (never sparse-eligible).
    """
    onnx = require("onnx", "onnx", "TensorRT engines from ONNX")
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    found: dict[str, bool | None] = {}
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        name, via_transpose = _weight_source(node.input[1], initializers, producers)
        if name is None or name in found:
            continue
        array = numpy_helper.to_array(initializers[name])
        if array.ndim < 2:
            continue
        weight = torch.from_numpy(array.copy())
        rows = _rows(weight, node.op_type, _stored_nk(node, via_transpose))
        if rows is not None:
            found[name] = is_24_sparse(rows) if rows.shape[-1] % GROUP == 0 else None
    return found
