"""Sparsity of prunable layers (conv and linear weights) and parameter counts."""

from __future__ import annotations

from dataclasses import dataclass

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


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) for every conv/linear layer with a weight, in model order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES) and getattr(module, "weight", None) is not None
    ]


def measure_sparsity(model: nn.Module) -> SparsitySummary:
    """Count zeros per prunable layer and non-zeros over all parameters (shared ones once)."""
    layers = [
        LayerSparsity(
            name=name,
            kind=type(module).__name__,
            shape=list(module.weight.shape),
            params=module.weight.numel(),
            nonzero=int(module.weight.count_nonzero()),
        )
        for name, module in prunable_layers(model)
    ]
    params = list(model.parameters())  # parameters() already yields shared tensors once
    return SparsitySummary(
        layers=layers,
        params=sum(p.numel() for p in params),
        nonzero_params=sum(int(p.count_nonzero()) for p in params),
    )
