"""`bitmask`: Linear weights as a 16-column bitmask + packed values, run by sparsebench's own
kernel (`kernels/bitmask.py`, operator `sparsebench::bitmask_linear`; extra `kernels`).

First version: Linear layers only (convolutions stay dense and are reported as skipped), fp32,
CPU. At batch 1 the kernel moves 4 bytes per non-zero plus 2 bytes per 16 columns and needs no
gathers (docs/kernels-research.md); batch N is still one pass per input row.

Restoring an artifact checks every packed layer with `check_packed` before the first call, so a
crafted file cannot make the kernel read outside its arrays.
"""

from __future__ import annotations

import torch
from torch import nn

from .._optional import require
from ..arch import load_state_dict_strict
from ..errors import SparsebenchError
from ..measure.sparsity import prunable_layers
from .base import Conversion, ExportConfig, Exporter, LayerReport, register_format, replace_module

EVIDENCE = ("sparsebench::bitmask_linear",)
PACKED = ("rowstart", "masks", "values")


def _kernels():
    return require("sparsebench.kernels", "kernels", "the bitmask format's kernels (numba)")


class BitmaskLinear(nn.Module):
    """`nn.Linear` whose weight is packed buffers `rowstart`, `masks`, `values` (any nnz)."""

    def __init__(self, packed: dict[str, torch.Tensor], bias, in_features: int):
        super().__init__()
        _kernels()  # registers the operator
        for key in PACKED:
            self.register_buffer(key, packed[key])
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.in_features = in_features
        self.out_features = packed["masks"].shape[0]

    def packed_weight(self) -> tuple[tuple[int, int], int, torch.Tensor]:
        """(dense shape, non-zeros, the values tensor): how measure/ sees this layer."""
        return (self.out_features, self.in_features), self.values.numel() - 16, self.values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.sparsebench.bitmask_linear(
            x, self.rowstart, self.masks, self.values, self.bias, self.in_features
        )

    def extra_repr(self) -> str:
        nnz = self.values.numel() - 16
        return f"in={self.in_features}, out={self.out_features}, nnz={nnz}"


def _check(name: str, state_dict: dict, in_features: int, out_features: int) -> None:
    """One line for anything in a file that the kernel could not run safely."""
    tensors = [state_dict.get(f"{name}.{key}") for key in PACKED]
    if not all(isinstance(t, torch.Tensor) and t.layout == torch.strided for t in tensors):
        raise SparsebenchError(f"bitmask artifact: {name} lacks its packed tensors")
    if tensors[1].dim() != 2 or tensors[1].shape[0] != out_features:
        raise SparsebenchError(
            f"bitmask artifact: {name} holds masks for {list(tensors[1].shape)}, the "
            f"architecture's layer has {out_features} outputs"
        )
    try:
        _kernels().bitmask.check_packed(*(t.numpy() for t in tensors), in_features)
    except ValueError as exc:
        raise SparsebenchError(f"bitmask artifact: {name} is corrupt: {exc}") from None


@register_format
class BitmaskExporter(Exporter):
    """Bitmask + packed values for Linear layers, run by the `sparsebench::` kernel."""

    name = "bitmask"
    description = "Linear weights as a 16-column bitmask + packed values (sparsebench kernel)"
    kernel_evidence = EVIDENCE

    def check_ready(self, config: ExportConfig) -> None:
        if config.device != "cpu":
            raise SparsebenchError("the bitmask format runs on the CPU only (--device cpu)")
        _kernels()

    def convert(self, model: nn.Module, example, config: ExportConfig) -> Conversion:
        kernels = _kernels()
        reports, converted = [], {}
        for name, module in prunable_layers(model):
            if type(module) is not nn.Linear or module.weight.dtype != torch.float32:
                reason = f"{type(module).__name__} is not supported (bitmask converts fp32 Linear)"
                reports.append(LayerReport(name, type(module).__name__, "skipped", reason))
                continue
            packed = kernels.pack_linear(module.weight)
            layer = BitmaskLinear(packed, module.bias, module.in_features)
            nnz = packed["values"].numel() - 16
            details = {"shape": list(module.weight.shape), "nnz": nnz,
                       "density": nnz / module.weight.numel()}  # fmt: skip
            reports.append(LayerReport(name, "Linear", "converted", "bitmask weight", details))
            converted[name] = {"in": module.in_features, "out": module.out_features}
            replace_module(model, name, layer)
        notes = [] if converted else ["no Linear layer to convert to bitmask"]
        model = model.eval()
        return Conversion(model, reports, self.stored_bytes(model), payload={"layers": converted},
                          notes=notes)  # fmt: skip

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        for name, spec in payload.get("layers", {}).items():
            module = model.get_submodule(name)
            if type(module) is not nn.Linear or [spec.get("in"), spec.get("out")] != [
                module.in_features,
                module.out_features,
            ]:
                raise SparsebenchError(
                    f"bitmask artifact: layer {name} is not the Linear that was converted"
                )
            _check(name, state_dict, module.in_features, module.out_features)
            shapes = {key: torch.empty_like(state_dict[f"{name}.{key}"]) for key in PACKED}
            replace_module(model, name, BitmaskLinear(shapes, module.bias, module.in_features))
        load_state_dict_strict(model, state_dict, "bitmask artifact")
        return model.eval()

    def converted_layers(self, model: nn.Module) -> list[str]:
        return [name for name, module in model.named_modules() if isinstance(module, BitmaskLinear)]
