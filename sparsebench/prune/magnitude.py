"""Global unstructured magnitude pruning with torch.nn.utils.prune (Deep Compression's baseline)."""

from __future__ import annotations

import sys

from torch import nn
from torch.nn.utils import prune

from ..errors import SparsebenchError
from ..measure.sanity import sanity_warnings
from ..measure.sparsity import prunable_layers


def magnitude_prune_(
    model: nn.Module, amount: float, fold: bool = True, scope: str = "global", warn: bool = True
) -> nn.Module:
    """Zero the `amount` fraction of smallest-magnitude conv/linear weights.

    `scope="global"` ranks all weights together (layers with small weights lose more, as in
    Deep Compression); `scope="layer"` prunes every layer to the same sparsity, which keeps
    untrained models meaningful (global ranking can empty a layer whose init scale is small).
    With `fold` the masks are made permanent (plain zeros in the weights); otherwise the
    model keeps `weight_orig`/`weight_mask`, as torch.nn.utils.prune leaves it.
    With `warn`, each layer left with no non-zero weight is named in a `warning:` line on
    stderr (see `prune_warnings`): its output no longer depends on its input.
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
    if warn:
        messages = prune_warnings(model)
        if messages and scope == "global":
            messages.append(
                f"global L1 ranking at amount {amount:.3g} emptied {len(messages)} layer(s): "
                "prune layer by layer (--scope layer) or a smaller --amount"
            )
        for message in messages:
            print(f"warning: {message}", file=sys.stderr)
    return model


def prune_warnings(model: nn.Module) -> list[str]:
    """What is wrong with a freshly pruned model: every layer whose weights are all zero."""
    return sanity_warnings(model)[0]
