"""Pruning methods behind one small base class and a registry (issue 13, first part).

A method is a *score* (how important each weight is) plus a *schedule* (when the scores are
taken and the masks applied). The one-shot methods here share one schedule, `prune_once`:
score every prunable layer, keep the highest scores to the requested sparsity (over all
layers together with scope "global", or layer by layer with "layer"), and zero the rest.
Methods that train, rewind or regrow will add their own schedules on top of the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import SparsebenchError
from ..measure.sparsity import prunable_layers
from ..registry import Registry

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class PruneConfig:
    """What every method takes: the target sparsity, the scope and a seed."""

    sparsity: float
    scope: str = "layer"
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)):
            raise SparsebenchError(f"sparsity must be a number in [0, 1), got {self.sparsity!r}")
        if not 0.0 <= self.sparsity < 1.0:
            raise SparsebenchError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in SCOPES:
            raise SparsebenchError(f"unknown scope '{self.scope}': use {' or '.join(SCOPES)}")


@dataclass
class PruneResult:
    """What a method did: its name and options, and the sparsity reached per layer."""

    method: str
    options: dict
    layers: dict[str, float] = field(default_factory=dict)  # layer -> achieved sparsity
    sparsity: float = 0.0  # over all prunable weights


class PruningMethod:
    """One method: `name`, a one-line `description`, the `paper` it follows, and `scores`."""

    name = ""
    description = ""
    paper = ""
    needs_data = False
    fixed_sparsity: float | None = None  # set by patterns that decide it (N:M), else None

    def scores(self, model: nn.Module, layers: list[tuple[str, nn.Module]],
               config: PruneConfig) -> dict[str, torch.Tensor]:  # fmt: skip
        """Importance of every weight of every layer (same shapes as the weights)."""
        raise NotImplementedError

    def masks(
        self, scores: dict[str, torch.Tensor], config: PruneConfig
    ) -> dict[str, torch.Tensor]:
        """Keep-masks from scores: the top (1 - sparsity) by scope. Overridden by methods whose
        granularity is not single weights (N:M groups, channels)."""
        return top_scores(scores, config.sparsity, config.scope)

    def prune(self, model: nn.Module, config: PruneConfig) -> PruneResult:
        return prune_once(self, model, config)


METHODS: Registry[PruningMethod] = Registry("pruning method", "sparsebench prune-methods")


def register_method(cls: type[PruningMethod]) -> type[PruningMethod]:
    METHODS.register(cls.name, cls())
    return cls


def top_scores(scores: dict[str, torch.Tensor], sparsity: float,
               scope: str) -> dict[str, torch.Tensor]:  # fmt: skip
    """Masks keeping exactly round((1 - sparsity) * n) weights of the highest score, counted
    over all layers ("global") or in each layer ("layer"); ties go to the lower index."""

    def keep_top(flat: torch.Tensor, keep: int) -> torch.Tensor:
        mask = torch.zeros(flat.numel(), dtype=torch.bool)
        if keep:
            mask[torch.topk(flat, keep, sorted=False).indices] = True
        return mask

    if scope == "layer":
        return {name: keep_top(s.flatten().float(), round((1 - sparsity) * s.numel())).view(s.shape)
                for name, s in scores.items()}  # fmt: skip
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    mask, masks, start = keep_top(flat, round((1 - sparsity) * flat.numel())), {}, 0
    for name, s in scores.items():
        masks[name] = mask[start : start + s.numel()].view(s.shape)
        start += s.numel()
    return masks


def prune_once(method: PruningMethod, model: nn.Module, config: PruneConfig) -> PruneResult:
    """The one-shot schedule: score, mask, zero the pruned weights in place."""
    layers = dense_layers(model)
    with torch.no_grad():
        scores = method.scores(model, layers, config)
        masks = method.masks(scores, config)
        for name, module in layers:
            module.weight.mul_(masks[name].to(module.weight.dtype))
    return reached(method, layers, config)


def dense_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv/linear layers a method can prune (strided weights), or a one-line error."""
    layers = [(name, module) for name, module in prunable_layers(model)
              if module.weight.layout == torch.strided]  # fmt: skip
    if not layers:
        raise SparsebenchError("the model has no dense conv or linear layers to prune")
    return layers


def reached(method: PruningMethod, layers, config: PruneConfig) -> PruneResult:
    """The PruneResult of `layers` as they are now: the sparsity each one reached."""
    result = PruneResult(method.name, {"sparsity": config.sparsity, "scope": config.scope,
                                       "seed": config.seed})  # fmt: skip
    zeros = total = 0
    for name, module in layers:
        pruned = int(module.weight.numel() - torch.count_nonzero(module.weight))
        result.layers[name] = pruned / max(module.weight.numel(), 1)
        zeros, total = zeros + pruned, total + module.weight.numel()
    result.sparsity = zeros / max(total, 1)
    return result


def prune(model: nn.Module, method: str, sparsity: float, scope: str = "layer", seed: int = 0,
          ) -> PruneResult:  # fmt: skip
    """Prune `model` in place with the registered `method` (see `sparsebench prune-methods`)."""
    return METHODS.get(method).prune(model, PruneConfig(sparsity, scope, seed))
