"""Global unstructured magnitude pruning with torch.nn.utils.prune (Deep Compression's baseline)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune

from ..errors import SparsebenchError
from ..measure.sparsity import prunable_layers


def magnitude_prune_(
    model: nn.Module, amount: float, fold: bool = True, scope: str = "global"
) -> nn.Module:
    """Zero the `amount` fraction of smallest-magnitude conv/linear weights.

    `scope="global"` ranks all weights together (layers with small weights lose more, as in
    Deep Compression); `scope="layer"` prunes every layer to the same sparsity, which keeps
    untrained models meaningful (global ranking can empty a layer whose init scale is small).
    With `fold` the masks are made permanent (plain zeros in the weights); otherwise the
    model keeps `weight_orig`/`weight_mask`, as torch.nn.utils.prune leaves it.
    """
    if not 0.0 <= amount < 1.0:
        raise SparsebenchError(f"pruning amount must be in [0, 1), got {amount}")
    targets = [(module, "weight") for _, module in prunable_layers(model)]
    if not targets:
        raise SparsebenchError("the model has no conv or linear layers to prune")
    if scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    elif scope == "layer":
        for module, name in targets:
            prune.l1_unstructured(module, name, amount=amount)
    else:
        raise SparsebenchError(f"unknown pruning scope '{scope}': use global or layer")
    if fold:
        for module, name in targets:
            prune.remove(module, name)
    return model
