"""`semi24`: NVIDIA 2:4 semi-structured sparsity through `torch.sparse` (cuSPARSELt or CUTLASS).

Eligible nn.Linear weights (2:4 pattern, shape and dtype accepted by torch's kernels) become
`SparseSemiStructuredTensor` parameters on an sm80+ GPU, in float16 (default) or bfloat16;
every other layer stays dense and is listed with the reason. `--enforce` magnitude-prunes the
eligible-shaped weights to 2:4 first. Without such a GPU `convert` raises `HardwareUnavailable`
carrying the eligibility table and the would-be size, so the CLI can still print them.

Artifacts store the dense half-precision weights (zeros included): semi-structured tensors do
not serialise, so `restore` compresses them again on the GPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..arch import load_state_dict_strict
from ..errors import SparsebenchError
from ..measure.sparsity import prunable_layers
from ._semi24_backend import (
    HardwareUnavailable,
    NoEligibleLayers,
    Semi24Unavailable,
    check_hardware,
    count_nonzero,
    eligibility,
    from_dense,
    packed_bytes,
    semi_structured_supported,
    shape_reasons,
)
from ._semi24_pattern import compressed_bytes, enforce_24_, fraction_24_groups, is_24_sparse
from .base import Conversion, ExportConfig, Exporter, LayerReport, register_format


@dataclass(frozen=True)
class Semi24Options:
    """`dtype`: float16 (default) or bfloat16; `enforce`: magnitude-prune to 2:4 first."""

    dtype: str | None = None
    enforce: bool = False


__all__ = [
    "HardwareUnavailable",
    "NoEligibleLayers",
    "Semi24Unavailable",
    "SemiStructuredExporter",
    "compressed_bytes",
    "count_nonzero",
    "eligibility",
    "eligibility_report",
    "enforce_24_",
    "fraction_24_groups",
    "is_24_sparse",
    "semi_structured_supported",
]

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_DTYPE = "float16"


def resolve_dtype(name: str | None) -> torch.dtype:
    """The half-precision dtype of `--dtype` (float16 when unset)."""
    name = name or DEFAULT_DTYPE
    if name not in DTYPES:
        raise SparsebenchError(f"semi24 supports --dtype float16 or bfloat16, not {name}")
    return DTYPES[name]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _layer_report(name: str, module: nn.Module, dtype, backend: str, zeroed: int) -> LayerReport:
    ok, reason = eligibility(module, dtype, backend)
    details: dict = {"zeroed": zeroed}
    if isinstance(module, nn.Linear):
        weight = module.weight
        groups = weight.shape[1] % 4 == 0
        details.update(
            shape=list(weight.shape),
            has_24_pattern=is_24_sparse(weight) if groups else None,
            fraction_24=fraction_24_groups(weight) if groups else None,
            dense_bytes=weight.numel() * dtype.itemsize,
            compressed_bytes=compressed_bytes(weight.shape, dtype) if ok else None,
        )
    action = "converted" if ok else "skipped"
    reason = reason or f"2:4 sparse, fits {backend} {_dtype_name(dtype)}"
    return LayerReport(name, type(module).__name__, action, reason, details)


def _stored_bytes(model: nn.Module, dtype, compressed: dict[str, int]) -> int:
    """Bytes of `model`'s state in `dtype`, the weights named in `compressed` at that size."""
    total = 0
    for key, tensor in model.state_dict().items():
        if key in compressed:
            total += compressed[key]
        elif tensor.is_floating_point():
            total += tensor.numel() * dtype.itemsize
        else:
            total += tensor.numel() * tensor.element_size()
    return total


def _converted_weights(layers: list[LayerReport], detail: str) -> dict[str, int]:
    return {f"{r.name}.weight": r.details[detail] for r in layers if r.action == "converted"}


def _prepare(model: nn.Module, config: ExportConfig, dtype, backend: str):
    """(pruned model, layer table, would-be stored bytes); `model` itself is never modified."""
    pruned = copy.deepcopy(model) if config.options.enforce else model
    layers = []
    for name, module in prunable_layers(pruned):
        zeroed = 0
        if config.options.enforce and not shape_reasons(module, dtype, backend):
            zeroed = enforce_24_(module.weight.data)
        layers.append(_layer_report(name, module, dtype, backend, zeroed))
    stored = _stored_bytes(pruned, dtype, _converted_weights(layers, "compressed_bytes"))
    return pruned, layers, stored


def eligibility_report(model: nn.Module, config: ExportConfig) -> tuple[list[LayerReport], int]:
    """The per-layer table and the stored bytes `convert` would produce, on any machine.

    Without a usable GPU the constraints are those of the backend torch would pick (CUTLASS's
    stricter shapes on a build without cuSPARSELt). `model` is not modified, even with
    `config.options.enforce`.
    """
    _, _, backend = check_hardware(config.device)
    _, layers, stored = _prepare(model, config, resolve_dtype(config.options.dtype), backend)
    return layers, stored


def _cast_inputs(dtype: torch.dtype):
    """Forward pre-hook: floating-point inputs to `dtype` (callers pass float32)."""

    def hook(module, args):
        return tuple(
            a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args
        )

    return hook


def _dense_weight(module, state_dict, prefix, local_metadata) -> None:
    """state_dict post-hook: save the 2:4 weight as a dense tensor (zeros included)."""
    state_dict[prefix + "weight"] = module.weight.detach().to_dense()


def _sparsify(model: nn.Module, names: list[str], dtype, backend: str, device: str) -> nn.Module:
    """Cast `model` to `dtype` on `device` and compress the weights of the layers `names`."""
    model = model.to(device=device, dtype=dtype).eval()
    model.register_forward_pre_hook(_cast_inputs(dtype))
    for name in names:
        linear = model.get_submodule(name)
        linear.weight = nn.Parameter(from_dense(linear.weight, backend), requires_grad=False)
        linear.register_state_dict_post_hook(_dense_weight)
    return model


def _nothing_eligible(layers: list[LayerReport], config: ExportConfig) -> str:
    first = "; ".join(f"{r.name}: {r.reason}" for r in layers[:3]) or "the model has no Linear"
    hint = "" if config.options.enforce else " (--enforce prunes eligible shapes to 2:4)"
    return f"semi24: no layer can take a 2:4 weight{hint}: {first}"


@register_format
class SemiStructuredExporter(Exporter):
    """2:4 semi-structured nn.Linear weights, run by cuSPARSELt or CUTLASS on sm80+ GPUs."""

    name = "semi24"
    options_type = Semi24Options
    description = "NVIDIA 2:4 semi-structured Linear weights (fp16/bf16, sm80+ GPU)"
    tolerance = 1e-2
    kernel_evidence = (
        "_cslt_sparse_mm",  # aten op of the cuSPARSELt backend
        "semi_structured::",  # torch's custom ops semi_structured::cusparselt_mm / cutlass_mm
        "_sparse_semi_structured_",  # aten::_sparse_semi_structured_mm/addmm/linear (CUTLASS)
        "cusparselt",
        "SparseGemm",  # CUTLASS sparse GEMM kernel template name
    )

    def convert(self, model: nn.Module, example: torch.Tensor, config: ExportConfig) -> Conversion:
        dtype = resolve_dtype(config.options.dtype)
        ok, reason, backend = check_hardware(config.device)
        pruned, layers, would_be = _prepare(model, config, dtype, backend)
        if not ok:
            raise HardwareUnavailable(reason, layers, would_be)
        names = [layer.name for layer in layers if layer.action == "converted"]
        if not names:
            raise NoEligibleLayers(_nothing_eligible(layers, config), layers, would_be)
        converted = _sparsify(copy.deepcopy(pruned), names, dtype, backend, config.device)
        for name in names:
            weight = converted.get_submodule(name).weight
            next(r for r in layers if r.name == name).details["packed_bytes"] = packed_bytes(weight)
        stored = _stored_bytes(pruned, dtype, _converted_weights(layers, "packed_bytes"))
        notes = [f"{len(names)} of {len(layers)} layers converted to 2:4 on {reason}"]
        notes.append(f"inputs are cast to {_dtype_name(dtype)}; outputs stay {_dtype_name(dtype)}")
        if stored != would_be:
            notes.append(f"compressed tensors as allocated: {stored} bytes (formula {would_be})")
        return Conversion(
            model=converted,
            layers=layers,
            stored_bytes=stored,
            payload={"layers": names, "dtype": _dtype_name(dtype), "backend": backend},
            notes=notes,
            reference=pruned if config.options.enforce else None,
        )

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        ok, reason, backend = check_hardware(device, preferred=payload.get("backend"))
        if not ok:
            raise HardwareUnavailable(f"cannot run a semi24 artifact here: {reason}")
        load_state_dict_strict(model, state_dict, "semi24 artifact")
        names = list(payload.get("layers", []))
        for name in names:
            if not is_24_sparse(model.get_submodule(name).weight):
                raise SparsebenchError(f"semi24 artifact: layer {name} is not 2:4 sparse")
        return _sparsify(model, names, resolve_dtype(payload.get("dtype")), backend, device)

    def tolerance_for(self, config: ExportConfig) -> float:
        """Always half precision: about 1e-2 relative."""
        return self.tolerance
