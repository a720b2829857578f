"""`csr`: Linear and Conv weights as torch.sparse_csr tensors, multiplied by torch's CSR kernels.

Every Linear, Conv1d and Conv2d is converted whatever its density (the benchmark shows where
CSR loses); grouped convolutions, non-zero padding modes, asymmetric 'same' padding and other
layer types stay dense and are reported as skipped. A convolution runs as im2col: its weight,
flattened to (out, in * kernel), multiplies the `F.unfold` columns of the input.

Kernels: each converted layer calls `torch.sparse.addmm` (or `torch.sparse.mm` without bias)
once per forward. The profiler shows `aten::_sparse_addmm > aten::addmm > aten::addmm`, the
innermost being the SparseCsrCPU kernel (MKL sparse BLAS; cuSPARSE on CUDA), which reads the
CSR arrays through `aten::crow_indices`, `aten::col_indices` and `aten::values`. Dense models
never call `aten::crow_indices` (it exists only for compressed sparse tensors), and a dense
weight passed to `torch.sparse.addmm` would not call it either, so it is the evidence.
Indices are int32 when the sizes allow: MKL (LP64) works on int32, and int64 indices are
converted to int32 by an `aten::to` copy on every call.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import load_state_dict_strict
from ..errors import SparsebenchError
from ..measure.sparsity import prunable_layers
from .base import (
    Conversion,
    ExportConfig,
    Exporter,
    LayerReport,
    register_format,
    replace_module,
    tensor_bytes,
)

INT32_MAX = torch.iinfo(torch.int32).max
EVIDENCE = ("aten::crow_indices",)


def to_csr(matrix: torch.Tensor) -> torch.Tensor:
    """A 2-D dense `matrix` as CSR, with int32 indices when its nnz and size fit in int32."""
    with warnings.catch_warnings():  # torch warns once that CSR support is "beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = matrix.detach().to_sparse_csr()
    if max(csr._nnz(), *matrix.shape) >= INT32_MAX:
        return csr
    crow, col = csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32)
    return torch.sparse_csr_tensor(crow, col, csr.values(), csr.shape, check_invariants=True)


def empty_csr(shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """An all-zero CSR matrix of `shape` (a placeholder that `load_state_dict` replaces)."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.int32, device=like.device)
    col = torch.zeros(0, dtype=torch.int32, device=like.device)
    values = torch.zeros(0, dtype=like.dtype, device=like.device)
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=True)


def csr_bytes(csr: torch.Tensor) -> tuple[int, int]:
    """(values bytes, index bytes: col_indices + crow_indices) of a CSR tensor."""
    return tensor_bytes(csr.values()), tensor_bytes(csr.col_indices(), csr.crow_indices())


def csr_matmul(weight: torch.Tensor, dense: torch.Tensor, bias: torch.Tensor | None):
    """weight (CSR, m x k) @ dense (k x n) + bias[:, None], with torch's sparse CSR kernel."""
    if bias is None:
        return torch.sparse.mm(weight, dense)
    return torch.sparse.addmm(bias.unsqueeze(1), weight, dense)


class _CSRLayer(nn.Module):
    """A CSR `weight` buffer and an optional dense `bias`; loads a CSR weight of any nnz."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        if weight.layout != torch.sparse_csr:
            raise SparsebenchError(f"CSR layers need a sparse_csr weight, not {weight.layout}")
        self.register_buffer("weight", weight)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        loaded = state_dict.get(prefix + "weight")
        if isinstance(loaded, torch.Tensor) and loaded.layout == torch.sparse_csr:
            if loaded.shape == self.weight.shape:  # copy_ needs equal nnz: adopt the layout first
                self.weight = loaded.clone().to(self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __deepcopy__(self, memo):
        # torch cannot deepcopy sparse compressed tensors (no storage); clone them instead
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = dict(self.__dict__)
        buffers = state.pop("_buffers")
        new.__dict__.update(copy.deepcopy(state, memo))
        new.__dict__["_buffers"] = {k: None if v is None else v.clone() for k, v in buffers.items()}
        return new


class CSRLinear(_CSRLayer):
    """`nn.Linear` with a CSR weight (out, in); inputs (..., in) of any leading dims."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = csr_matmul(self.weight, flat.T, self.bias)  # (out, N)
        return out.T.reshape(*x.shape[:-1], out.shape[0]).contiguous()

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in={in_features}, out={out_features}, nnz={self.weight._nnz()}"


class CSRConv(_CSRLayer):
    """Conv1d/Conv2d (groups 1, zero padding) as a CSR weight (out, in * kernel) times im2col."""

    def __init__(self, weight, bias, dims: int, kernel_size, stride, padding, dilation):
        super().__init__(weight, bias)
        self.dims = dims  # 1: Conv1d, run as a Conv2d of height 1
        lead = (1,) if dims == 1 else ()
        self.kernel_size = lead + tuple(kernel_size)
        self.stride = lead + tuple(stride)
        self.padding = (0,) * len(lead) + tuple(padding)
        self.dilation = lead + tuple(dilation)

    def _output_size(self, size: int, axis: int) -> int:
        span = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1
        return (size + 2 * self.padding[axis] - span) // self.stride[axis] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unbatched = x.dim() == self.dims + 1
        x = x.unsqueeze(0) if unbatched else x
        x = x.unsqueeze(2) if self.dims == 1 else x
        batch, height, width = x.shape[0], x.shape[2], x.shape[3]
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        flat = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (in * kernel, batch * L)
        out = csr_matmul(self.weight, flat, self.bias)
        shape = (out.shape[0], batch, self._output_size(height, 0), self._output_size(width, 1))
        out = out.reshape(shape).transpose(0, 1).contiguous()
        out = out.squeeze(2) if self.dims == 1 else out
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size[-self.dims :]}, stride={self.stride[-self.dims :]}, "
            f"padding={self.padding[-self.dims :]}, dilation={self.dilation[-self.dims :]}, "
            f"nnz={self.weight._nnz()}"
        )


def _padding(conv: nn.Module) -> tuple[int, ...] | None:
    """Symmetric zero padding of `conv` per spatial dim, or None when it is asymmetric."""
    if not isinstance(conv.padding, str):
        return tuple(conv.padding)
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
    return None if any(t % 2 for t in totals) else tuple(t // 2 for t in totals)


def skip_reason(module: nn.Module) -> str | None:
    """Why `module` cannot become a CSR layer, or None when it can."""
    if isinstance(module, nn.Linear):
        return None
    if type(module) not in (nn.Conv1d, nn.Conv2d):
        return f"{type(module).__name__} is not supported (csr converts Linear, Conv1d, Conv2d)"
    if module.groups != 1:
        return f"groups={module.groups}: a grouped conv is not one CSR matrix"
    if module.padding_mode != "zeros":
        return f"padding_mode='{module.padding_mode}' (only zero padding is unfolded)"
    if _padding(module) is None:
        return "asymmetric 'same' padding (even kernel span)"
    return None


def csr_layer(module: nn.Module, weight: torch.Tensor | None = None) -> _CSRLayer:
    """The CSR layer replacing `module`, with `weight` (its own weight as CSR when None)."""
    matrix_shape = (module.weight.shape[0], module.weight[0].numel())
    if weight is None:
        weight = to_csr(module.weight.detach().reshape(matrix_shape))
    if isinstance(module, nn.Linear):
        return CSRLinear(weight, module.bias)
    dims = 1 if isinstance(module, nn.Conv1d) else 2
    return CSRConv(weight, module.bias, dims, module.kernel_size, module.stride,
                   _padding(module), module.dilation)  # fmt: skip


def _report(name: str, module: nn.Module, layer: _CSRLayer) -> LayerReport:
    values_bytes, index_bytes = csr_bytes(layer.weight)
    nnz = layer.weight._nnz()
    details = {
        "shape": list(layer.weight.shape),
        "nnz": nnz,
        "density": nnz / module.weight.numel() if module.weight.numel() else 0.0,
        "index_dtype": str(layer.weight.col_indices().dtype).removeprefix("torch."),
        "values_bytes": values_bytes,
        "index_bytes": index_bytes,
    }
    return LayerReport(name, type(module).__name__, "converted", "CSR weight", details)


def expected_kernel_calls(layers: list[LayerReport]) -> int:
    """`kernel_evidence` hits of one CPU forward pass: one CSR matmul per converted layer."""
    return sum(layer.action == "converted" for layer in layers)


@register_format
class CSRExporter(Exporter):
    """Compressed sparse row weights for Linear/Conv layers, run by torch's sparse CSR matmul."""

    name = "csr"
    description = "Linear/Conv weights as torch.sparse_csr tensors (MKL / cuSPARSE SpMM)"
    kernel_evidence = EVIDENCE

    def convert(self, model: nn.Module, example: torch.Tensor, config: ExportConfig) -> Conversion:
        reports, converted = [], {}
        for name, module in prunable_layers(model):
            reason = skip_reason(module)
            if reason:
                reports.append(LayerReport(name, type(module).__name__, "skipped", reason))
                continue
            layer = csr_layer(module)
            reports.append(_report(name, module, layer))
            converted[name] = {"kind": type(module).__name__, "shape": list(layer.weight.shape)}
            replace_module(model, name, layer)
        model = model.eval().to(config.device)
        notes = [] if converted else ["no layer could be converted to CSR"]
        payload = {"layers": converted}
        stored = self.stored_bytes(model)  # values + indices, at the index dtype used
        return Conversion(model, reports, stored, payload=payload, notes=notes)

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        for name, spec in payload.get("layers", {}).items():
            module = model.get_submodule(name)
            if type(module).__name__ != spec["kind"] or skip_reason(module):
                raise SparsebenchError(
                    f"csr artifact: layer {name} is a {type(module).__name__} in the architecture, "
                    f"not the {spec['kind']} that was converted"
                )
            stored = state_dict.get(f"{name}.weight")
            if not isinstance(stored, torch.Tensor) or stored.layout != torch.sparse_csr:
                raise SparsebenchError(f"csr artifact: {name}.weight is not a sparse_csr tensor")
            expected = (module.weight.shape[0], module.weight[0].numel())
            if tuple(spec["shape"]) != expected or tuple(stored.shape) != expected:
                raise SparsebenchError(
                    f"csr artifact: {name} holds a {list(stored.shape)} matrix, the "
                    f"architecture's layer takes {list(expected)}"
                )
            placeholder = empty_csr(expected, module.weight)
            replace_module(model, name, csr_layer(module, placeholder))
        load_state_dict_strict(model, state_dict, "csr artifact")
        return model.eval().to(device)
