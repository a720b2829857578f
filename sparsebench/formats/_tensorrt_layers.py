"""Per-layer facts of a built engine, parsed from TensorRT's engine inspector JSON.

`IEngineInspector.get_engine_information(LayerInformationFormat.JSON)` returns
`{"Layers": [...], "Bindings": [...]}` (TensorRT 11 replaces "Bindings" with "I/O Tensors").
With `ProfilingVerbosity.DETAILED` each layer is an object such as

    {"Name": "/conv1/Conv + /relu/Relu", "LayerType": "CaskConvolution",
     "ParameterType": "Convolution",
     "Inputs": [{"Name": ..., "Dimensions": [1, 64, 56, 56],
                 "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "Outputs": [...], "Weights": {"Type": "Half", "Count": 36864}, "HasSparseWeights": 0,
     "TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16_...", "StreamId": 0,
     "Metadata": "[ONNX Layer: /conv1/Conv]\\x1e[ONNX Layer: /relu/Relu]"}

while Myelin-compiled layers (LayerType "gemm", "kgen", ...) have Inputs/Outputs with short
types ("Half", "Float") and a TacticName but no Weights. Without DETAILED, layers are bare
name strings. A layer counts as sparse when its tactic is one of the 2:4 sparse kernels (their
names contain "sparse" or "sptensor", e.g. `sm80_xmma_sparse_gemm_..._sptensor16x8x32`) or
when TensorRT marks it `HasSparseWeights`. Every field is read defensively: a missing or
unexpected one leaves that fact unknown (None) rather than failing the export.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from .base import LayerReport

SPARSE_TACTIC = re.compile(r"sparse|sptensor", re.IGNORECASE)
COMPUTE_KIND = re.compile(r"conv|gemm|matmul|matrixmultiply|fullyconnected", re.IGNORECASE)
ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]*)\]")
# substrings of a TensorRT type/format description -> precision; order matters
# ("bfloat16" contains "float", "uint8" contains "int8")
_PRECISIONS = (
    ("bfloat16", "bf16"),
    ("bf16", "bf16"),
    ("fp8", "fp8"),
    ("uint8", "uint8"),
    ("int8", "int8"),
    ("int32", "int32"),
    ("int64", "int64"),
    ("half", "fp16"),
    ("fp16", "fp16"),
    ("double", "fp64"),
    ("fp32", "fp32"),
    ("float", "fp32"),
    ("bool", "bool"),
)
NOT_DETAILED = "no layer details: the engine was not built with ProfilingVerbosity.DETAILED"


def precision_of(description: Any) -> str | None:
    """'Channel major FP16 format where channel % 8 == 0' / 'Half' -> 'fp16' (None if unknown)."""
    text = str(description or "").lower()
    return next((name for token, name in _PRECISIONS if token in text), None)


def _tensor_precision(tensors: Any) -> str | None:
    if not (isinstance(tensors, list) and tensors and isinstance(tensors[0], dict)):
        return None
    tensor = tensors[0]  # TensorRT 11 splits "Format/Datatype" into "DataType" and "Format"
    return precision_of(tensor.get("DataType") or tensor.get("Format/Datatype"))


def _flag(value: Any) -> bool | None:
    if value is None:
        return None
    try:
        return bool(int(value))
    except (TypeError, ValueError):
        return str(value).strip().lower() in ("true", "yes")


def parse_layer(raw: dict[str, Any]) -> LayerReport:
    """One inspector layer object -> a LayerReport (action 'sparse', 'dense' or 'other')."""
    layer_type = str(raw.get("LayerType") or "")
    kind = str(raw.get("ParameterType") or layer_type)
    tactic = str(raw.get("TacticName") or "")
    has_sparse = _flag(raw.get("HasSparseWeights"))
    sparse_tactic = bool(SPARSE_TACTIC.search(tactic))
    weights = raw.get("Weights") if isinstance(raw.get("Weights"), dict) else {}
    compute = bool(weights) or bool(COMPUTE_KIND.search(f"{layer_type} {kind}"))
    if sparse_tactic or has_sparse:
        action = "sparse"
        reason = "2:4 sparse tactic" if sparse_tactic else "HasSparseWeights"
    else:
        action, reason = ("dense", "dense tactic") if compute else ("other", "")
    details = {
        "precision": _tensor_precision(raw.get("Inputs")),
        "output_precision": _tensor_precision(raw.get("Outputs")),
        "weights_precision": precision_of(weights.get("Type")) if weights else None,
        "tactic": tactic or None,
        "sparse_tactic": sparse_tactic,
        "has_sparse_weights": has_sparse,
        "onnx_layers": ONNX_LAYER.findall(str(raw.get("Metadata") or "")),
    }
    return LayerReport(str(raw.get("Name", "")), kind, action, reason, details)


def parse_engine_layers(text: str) -> tuple[list[LayerReport], list[str]]:
    """All layers of the inspector's engine JSON, plus notes on what could not be read."""
    try:
        data = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        return [], [f"engine inspector output is not JSON ({exc}); no per-layer report"]
    raw_layers = data.get("Layers", []) if isinstance(data, dict) else data
    if not isinstance(raw_layers, list):
        return [], ["engine inspector JSON has no layer list; no per-layer report"]
    layers, notes = [], []
    for raw in raw_layers:
        if isinstance(raw, dict):
            layers.append(parse_layer(raw))
        else:  # LAYER_NAMES_ONLY: a bare name
            layers.append(LayerReport(str(raw), "", "unknown", NOT_DETAILED))
    if any(layer.action == "unknown" for layer in layers):
        notes.append(NOT_DETAILED)
    return layers, notes


def summarize_layers(layers: list[LayerReport]) -> dict[str, Any]:
    """Counts for the sidecar and the export notes: sparse layers and compute precisions."""
    compute = [layer for layer in layers if layer.action in ("sparse", "dense")]
    precisions = Counter(layer.details.get("precision") or "unknown" for layer in compute)
    return {
        "layers": len(layers),
        "compute_layers": len(compute),
        "sparse_layers": [layer.name for layer in compute if layer.action == "sparse"],
        "compute_precisions": dict(sorted(precisions.items())),
    }
