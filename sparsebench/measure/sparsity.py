"""Sparsity of prunable layers (conv and linear weights) and parameter counts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


@dataclass
class LayerSparsity:
    """Zeros in one prunable layer's weight."""

    name: str
    kind: str
    shape: list[int]
    params: int
    nonzero: int

    @property
    def sparsity_pct(self) -> float:
        return 100.0 * (1 - self.nonzero / self.params) if self.params else 0.0


@dataclass
class SparsitySummary:
    """Sparsity over prunable weights, plus totals over every parameter of the model."""

    layers: list[LayerSparsity]
    params: int
    nonzero_params: int

    @property
    def prunable_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def sparsity_pct(self) -> float:
        """Zero weights / all weights of prunable layers, in percent."""
        total = self.prunable_params
        nonzero = sum(layer.nonzero for layer in self.layers)
        return 100.0 * (1 - nonzero / total) if total else 0.0


def is_compressed(tensor: torch.Tensor) -> bool:
    """Whether a weight is stored sparse (CSR and friends, 2:4 semi-structured), not dense."""
    if isinstance(tensor, nn.Parameter):
        tensor = tensor.data
    semi = getattr(torch.sparse, "SparseSemiStructuredTensor", ())
    return tensor.layout != torch.strided or isinstance(tensor, semi)


def nonzero_count(tensor: torch.Tensor) -> int:
    """Non-zero elements; for a compressed tensor, the non-zeros among its stored values."""
    if is_compressed(tensor):
        data = tensor.data if isinstance(tensor, nn.Parameter) else tensor
        return int(data.values().count_nonzero())
    return int(tensor.count_nonzero())


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) for every conv/linear layer, dense or converted to a sparse layout."""
    layers = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        if isinstance(module, PRUNABLE_TYPES) or is_compressed(weight) or _is_hf_conv1d(module):
            layers.append((name, module))
    return layers


def packed_layers(model: nn.Module) -> list[tuple[str, nn.Module, tuple]]:
    """(name, module, (dense shape, non-zeros, values tensor)) for layers whose weight lives
    in a layout of sparsebench's own kernels: they describe it by a `packed_weight()` method
    (they have no `weight`, so `prunable_layers` does not list them)."""
    found = []
    for name, module in model.named_modules():
        describe = getattr(module, "packed_weight", None)
        if callable(describe):
            found.append((name, module, describe()))
    return found


def _is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2's linear layers, weight stored as in x out)."""
    cls = type(module)
    bases = getattr(cls, "_sparsebench_base", cls)
    return bases.__name__ == "Conv1D" and bases.__module__.startswith("transformers")


def measure_sparsity(model: nn.Module) -> SparsitySummary:
    """Count zeros per prunable layer and non-zeros over all parameters (shared ones once)."""
    layers = [
        LayerSparsity(
            name=name,
            kind=type(module).__name__,
            shape=list(module.weight.shape),
            params=module.weight.numel(),
            nonzero=nonzero_count(module.weight),
        )
        for name, module in prunable_layers(model)
    ]
    packed = packed_layers(model)
    layers += [
        LayerSparsity(name=name, kind=type(module).__name__, shape=list(shape),
                      params=math.prod(shape), nonzero=nnz)
        for name, module, (shape, nnz, _) in packed
    ]  # fmt: skip
    # parameters() yields shared tensors once; compressed weights are buffers, added here
    tensors = list(model.parameters())
    known = {id(t) for t in tensors}
    tensors += [
        m.weight
        for _, m in prunable_layers(model)
        if is_compressed(m.weight) and id(m.weight) not in known
    ]
    return SparsitySummary(
        layers=layers,
        params=sum(t.numel() for t in tensors) + sum(math.prod(p[2][0]) for p in packed),
        nonzero_params=sum(nonzero_count(t) for t in tensors) + sum(p[2][1] for p in packed),
    )
