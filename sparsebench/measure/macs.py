"""Dense and effective multiply-accumulates per sample, counted with torch's flop counter.

Convention (reproduces the assignment's VGG16-BN baseline, 314.002 M):
- convolutions, linear layers, matmuls and attention (QK^T and attention @ V):
  torch.utils.flop_counter's FLOPs / 2,
  i.e. one MAC per weight per output position; biases are not counted;
- BatchNorm in inference: one MAC per output element (it folds into a scale and shift);
- activations, pooling, LayerNorm, softmax and additions: zero;
- a sparse-layout (CSR) matmul counts as the dense matmul of the same shapes.
Effective MACs scale each op that reads a prunable weight by that weight's density
(non-zeros / elements), i.e. they count only the multiply-adds with a non-zero weight.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

from ..inputs import as_batch, call
from .sparsity import is_compressed, nonzero_count, packed_layers, prunable_layers

aten = torch.ops.aten
_BATCH_NORM_OPS = (
    aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit,
    aten.native_batch_norm,
    aten.cudnn_batch_norm,
)


@dataclass
class MacsResult:
    """MACs for one sample, in total and per prunable layer."""

    dense: int
    effective: int
    per_layer: dict[str, int] = field(default_factory=dict)

    @property
    def dense_m(self) -> float:
        return self.dense / 1e6

    @property
    def effective_m(self) -> float:
        return self.effective / 1e6


def _storage_key(tensor: torch.Tensor) -> int:
    if is_compressed(tensor):  # sparse layouts have no single storage: key by their values
        tensor = tensor.values()
    return tensor.untyped_storage().data_ptr()


class _MacCounter:
    """Builds flop formulas that also accumulate density-weighted and per-layer counts."""

    def __init__(self, model: nn.Module):
        self.layers: dict[int, tuple[str, float]] = {}
        for name, module in prunable_layers(model):
            weight = module.weight.detach()
            density = nonzero_count(weight) / weight.numel() if weight.numel() else 1.0
            self.layers[_storage_key(weight)] = (name, density)
        for name, _, (shape, nnz, values) in packed_layers(model):
            numel = math.prod(shape)
            self.layers[_storage_key(values)] = (name, nnz / numel if numel else 1.0)
        self.effective_flops = 0.0
        self.per_layer: dict[str, int] = defaultdict(int)

    def _layer_of(self, args) -> tuple[str, float] | None:
        for arg in args:
            if (
                isinstance(arg, torch.Tensor)
                and arg.device.type != "meta"
                and arg.layout
                in (
                    torch.strided,
                    torch.sparse_csr,
                )
            ):
                hit = self.layers.get(_storage_key(arg))
                if hit is not None:
                    return hit
        return None

    def wrap(self, base):
        def formula(*args, out_val=None, **kwargs):
            flops = base(*args, out_val=out_val, **kwargs)
            hit = self._layer_of(args)
            if hit is None:
                self.effective_flops += flops
            else:
                name, density = hit
                self.effective_flops += flops * density
                self.per_layer[name] += flops // 2
            return flops

        formula._get_raw = True
        return formula

    def mapping(self) -> dict:
        table = {op: self.wrap(fn) for op, fn in flop_registry.items()}
        for op in _BATCH_NORM_OPS:
            table[op] = self.wrap(_batch_norm_flops)
        table[aten._scaled_dot_product_flash_attention_for_cpu] = self.wrap(_cpu_attention_flops)
        table[aten._sparse_addmm] = self.wrap(_sparse_addmm_flops)
        table[aten._sparse_mm] = self.wrap(_sparse_mm_flops)
        own = getattr(torch.ops, "sparsebench", None)  # registered by importing sparsebench.kernels
        for name, flops in (("bitmask_linear", _bitmask_linear_flops),
                            ("bitmask_conv2d", _bitmask_conv2d_flops)):  # fmt: skip
            op = getattr(own, name, None)
            if op is not None:
                table[op] = self.wrap(flops)
        return table


def _cpu_attention_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    """CPU fused attention, which torch's registry leaves out: QK^T plus attention @ V."""
    return sdpa_flop_count(query.shape, key.shape, value.shape)


def _sparse_mm_flops(mat1, mat2, *args, out_val=None, **kwargs) -> int:
    """A sparse (CSR) matmul counted as the dense matmul of the same shapes."""
    return 2 * mat1.shape[0] * mat1.shape[1] * mat2.shape[-1]


def _sparse_addmm_flops(bias, mat1, mat2, *args, out_val=None, **kwargs) -> int:
    return _sparse_mm_flops(mat1, mat2)


def _bitmask_linear_flops(x, rowstart, masks, values, bias, in_features, *args, out_val=None,
                          **kwargs) -> int:  # fmt: skip
    """sparsebench's packed Linear counted as the dense Linear of the same shapes."""
    return 2 * (x.numel() // in_features) * masks.shape[0] * in_features


def _bitmask_conv2d_flops(x, rowstart, masks, values, bias, *args, out_val=None, **kwargs) -> int:
    """sparsebench's packed Conv2d counted as the dense convolution: each output element is a
    dot product over the weight's C kh kw inputs (the packed masks' row length)."""
    in_features = x.shape[1] * math.prod(args[0]) if args else 0  # args[0]: kernel_size
    return 2 * (out_val.numel() if out_val is not None else 0) * in_features


def _batch_norm_flops(*args, out_val=None, **kwargs) -> int:
    """Inference BatchNorm: one multiply-add (two FLOPs) per element."""
    return 2 * math.prod(args[0].shape)


def count_macs(model: nn.Module, example) -> MacsResult:
    """Count MACs of one forward pass of `model` on `example` (a tensor or a `Batch`),
    divided per sample."""
    example = as_batch(example)
    counter = _MacCounter(model)
    mode = FlopCounterMode(display=False, depth=None, custom_mapping=counter.mapping())
    with torch.no_grad(), mode:
        call(model, example)
    first = example.first
    batch = first.shape[0] if first.dim() > 0 and first.shape[0] > 0 else 1
    return MacsResult(
        dense=mode.get_total_flops() // 2 // batch,
        effective=round(counter.effective_flops / 2 / batch),
        per_layer={name: macs // batch for name, macs in counter.per_layer.items()},
    )
