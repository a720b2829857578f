"""`bitmask`: Linear and Conv2d weights as a 16-column bitmask + packed values, run by
sparsebench's own kernels (`kernels/bitmask.py`, operators `sparsebench::bitmask_linear` and
`sparsebench::bitmask_conv2d`; extra `kernels`). fp32, CPU.

At batch 1 the kernel moves 4 bytes per non-zero plus 2 bytes per 16 columns and needs no
gathers; with many input rows (batch, sequence, a convolution's positions through im2col) it
runs an SpMM (docs/kernels-research.md). An inference BatchNorm after a converted convolution is
folded into it (`fold.py`). A layer denser than STAY_DENSE_ABOVE stays dense, where the
kernels were measured slower than dense torch.

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
from .fold import conv_bn_pairs, folded_conv

EVIDENCE = ("sparsebench::bitmask_linear", "sparsebench::bitmask_conv2d")
PACKED = ("rowstart", "masks", "values")
STAY_DENSE_ABOVE = 0.6  # density above which the kernels stop paying (50 % still won, measured)


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


class BitmaskConv2d(nn.Module):
    """A zero-padded, ungrouped `nn.Conv2d` (BatchNorm possibly folded in) whose weight is
    packed buffers over its (O, C kh kw) im2col matrix."""

    def __init__(self, packed: dict[str, torch.Tensor], bias, conv: nn.Conv2d):
        super().__init__()
        _kernels()
        for key in PACKED:
            self.register_buffer(key, packed[key])
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.geometry = [list(conv.kernel_size), list(conv.stride), list(conv.padding),
                         list(conv.dilation)]  # fmt: skip

    def packed_weight(self) -> tuple[tuple[int, ...], int, torch.Tensor]:
        shape = (self.out_channels, self.in_channels, *self.geometry[0])
        return shape, self.values.numel() - 16, self.values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.sparsebench.bitmask_conv2d(
            x, self.rowstart, self.masks, self.values, self.bias, *self.geometry, self.in_channels
        )

    def extra_repr(self) -> str:
        kernel, stride, padding, _ = self.geometry
        return (f"{self.in_channels}, {self.out_channels}, kernel={kernel}, stride={stride}, "
                f"padding={padding}, nnz={self.values.numel() - 16}")  # fmt: skip


def _unsupported(module: nn.Module) -> str:
    """Why the kernels cannot run `module` ("" when they can)."""
    if module.weight.dtype != torch.float32:
        return f"{module.weight.dtype} weight (the kernels are fp32)"
    if type(module) is nn.Linear:
        return ""
    if type(module) is not nn.Conv2d:
        return f"{type(module).__name__} is not supported (bitmask converts Linear and Conv2d)"
    if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return "grouped, non-zero-padded or padding='same' Conv2d is not supported"
    return ""


def _geometry(module: nn.Module) -> dict:
    if type(module) is nn.Linear:
        return {"in": module.in_features, "out": module.out_features}
    return {"in": module.in_channels, "out": module.out_channels,
            "kernel": list(module.kernel_size), "stride": list(module.stride),
            "padding": list(module.padding), "dilation": list(module.dilation)}  # fmt: skip


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
    """Bitmask + packed values for Linear and Conv2d layers, run by the `sparsebench::` kernels."""

    name = "bitmask"
    description = "Linear/Conv2d weights as a 16-column bitmask + packed values (own kernels)"
    kernel_evidence = EVIDENCE

    def check_ready(self, config: ExportConfig) -> None:
        if config.device != "cpu":
            raise SparsebenchError("the bitmask format runs on the CPU only (--device cpu)")
        _kernels()

    def convert(self, model: nn.Module, example, config: ExportConfig) -> Conversion:
        kernels = _kernels()
        pairs, fold_note = conv_bn_pairs(model)
        reports, converted, folded = [], {}, []
        for name, module in prunable_layers(model):
            kind = type(module).__name__
            reason = _unsupported(module)
            nnz = int(torch.count_nonzero(module.weight))
            density = nnz / module.weight.numel() if module.weight.numel() else 1.0
            if not reason and density > STAY_DENSE_ABOVE:
                reason = (f"kept dense: density {density:.0%} is above {STAY_DENSE_ABOVE:.0%}, "
                          "where the kernels are slower than dense")  # fmt: skip
            if reason:
                reports.append(LayerReport(name, kind, "skipped", reason, {"density": density}))
                continue
            weight, bias, norm = module.weight, module.bias, pairs.get(name)
            if norm is not None:
                weight, bias = folded_conv(module, model.get_submodule(norm))
                folded.append(norm)
            packed = kernels.pack_linear(weight)
            if type(module) is nn.Linear:
                layer = BitmaskLinear(packed, bias, module.in_features)
            else:
                layer = BitmaskConv2d(packed, bias, module)
            details = {"shape": list(module.weight.shape), "nnz": packed["values"].numel() - 16,
                       "density": density, "folded": norm or ""}  # fmt: skip
            reports.append(LayerReport(name, kind, "converted", "bitmask weight", details))
            converted[name] = {**_geometry(module), "bias": bias is not None}
            replace_module(model, name, layer)
        for norm in folded:
            replace_module(model, norm, nn.Identity())
        notes = [] if converted else ["no Linear or Conv2d layer to convert to bitmask"]
        if fold_note and any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            notes.append(fold_note)
        model = model.eval()
        return Conversion(model, reports, self.stored_bytes(model),
                          payload={"layers": converted, "folded": folded}, notes=notes)  # fmt: skip

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        if device != "cpu":
            raise SparsebenchError("the bitmask format runs on the CPU only (--device cpu)")
        folded = payload.get("folded", [])
        if not isinstance(folded, list) or not all(isinstance(n, str) for n in folded):
            raise SparsebenchError("bitmask artifact: 'folded' is not a list of layer names")
        for name, spec in payload.get("layers", {}).items():
            module = model.get_submodule(name)
            if (
                type(module) not in (nn.Linear, nn.Conv2d)
                or _unsupported(module)
                or (
                    not isinstance(spec, dict)
                    or {**_geometry(module), "bias": spec.get("bias")} != spec
                    or not isinstance(spec.get("bias"), bool)
                )
            ):
                raise SparsebenchError(
                    f"bitmask artifact: layer {name} is not the layer that was converted"
                )
            in_features = module.weight[0].numel()
            _check(name, state_dict, in_features, module.weight.shape[0])
            shapes = {key: torch.empty_like(state_dict[f"{name}.{key}"]) for key in PACKED}
            bias = torch.empty(module.weight.shape[0]) if spec["bias"] else None
            if type(module) is nn.Linear:
                layer = BitmaskLinear(shapes, bias, module.in_features)
            else:
                layer = BitmaskConv2d(shapes, bias, module)
            replace_module(model, name, layer)
        for name in folded:
            try:
                norm = model.get_submodule(name)
            except AttributeError:
                norm = None
            if type(norm) is not nn.BatchNorm2d:
                raise SparsebenchError(f"bitmask artifact: folded {name} is not a BatchNorm2d")
            replace_module(model, name, nn.Identity())
        load_state_dict_strict(model, state_dict, "bitmask artifact")
        return model.eval()

    def converted_layers(self, model: nn.Module) -> list[str]:
        layers = (BitmaskLinear, BitmaskConv2d)
        return [name for name, module in model.named_modules() if isinstance(module, layers)]
