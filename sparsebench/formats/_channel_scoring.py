"""Soft channel pruning: zero the least important channels of each group, keeping shapes.

The scores are torch-pruning's importance criteria over a dependency group. A zeroed channel
outputs exactly 0 (weights, bias and BatchNorm scale and shift all zero), so the zero-channel
removal takes it out without any constant to fold, and the soft-pruned model is an exact dense
reference for the channel-removed one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from ..data import load_dataset
from ..data.synthetic import synthetic_inputs
from ..errors import SparsebenchError
from ..measure.accuracy import fit_samples

CRITERIA: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1": lambda: tp.importance.MagnitudeImportance(p=1),
    "l2": lambda: tp.importance.MagnitudeImportance(p=2),
    "bn": tp.importance.BNScaleImportance,
    "taylor": tp.importance.TaylorImportance,
}
TAYLOR_SAMPLES = 32


def make_importance(criterion: str) -> tp.importance.Importance:
    """The torch-pruning importance for `criterion` (l1, l2, bn or taylor)."""
    if criterion not in CRITERIA:
        raise SparsebenchError(
            f"unknown channel criterion '{criterion}': use one of {', '.join(CRITERIA)}"
        )
    return CRITERIA[criterion]()


def taylor_batch(model: nn.Module, example: torch.Tensor, data: str | None):
    """Inputs and labels for Taylor scores: `data`'s train split, else pseudo-labelled noise."""
    if data:
        dataset = load_dataset(data, "train")
        x = fit_samples(dataset.x[:TAYLOR_SAMPLES], tuple(example.shape)).to(example.dtype)
        return x, dataset.y[:TAYLOR_SAMPLES].long()
    x = synthetic_inputs((TAYLOR_SAMPLES, *example.shape[1:]), seed=11, dtype=example.dtype)
    with torch.no_grad():
        return x, model(x).argmax(dim=-1)


def _accumulate_gradients(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        F.cross_entropy(model(inputs), labels.to(inputs.device)).backward()


def _zero_group_(dg: tp.DependencyGraph, group) -> None:
    """Make the group's channels output exactly 0: weights, biases, BN scale, shift and mean."""
    with torch.no_grad():
        for item in group:
            module = item.dep.target.module
            if not dg.is_out_channel_pruning_fn(item.dep.handler) or not isinstance(
                module, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)
            ):
                continue
            stats = getattr(module, "running_mean", None)  # BN without affine: x - mean = 0
            for tensor in (module.weight, module.bias, stats):
                if tensor is not None:
                    tensor[item.idxs] = 0


def soft_prune_(
    model: nn.Module,
    dg: tp.DependencyGraph,
    roots: list[str],
    ratio: float,
    criterion: str,
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, int | str]:
    """Zero the lowest-scoring `ratio` of channels of each root's group, in place.

    Returns, per root layer, how many channels were zeroed, or why none were (the `bn`
    criterion scores only groups with a BatchNorm). `batch` (inputs, labels) feeds `taylor`.
    """
    if not 0 <= ratio < 1:
        raise SparsebenchError(f"channel pruning ratio must be in [0, 1), not {ratio}")
    importance = make_importance(criterion)
    if criterion == "taylor":
        _accumulate_gradients(model, *batch)
    zeroed: dict[str, int | str] = {}
    try:
        for root in roots:
            module = model.get_submodule(root)
            pruning_fn = dg.get_pruner_of_module(module).prune_out_channels
            channels = dg.get_out_channels(module)
            scores = importance(dg.get_pruning_group(module, pruning_fn, list(range(channels))))
            if scores is None:
                zeroed[root] = f"the {criterion} criterion does not score this group"
                continue
            count = min(int(ratio * channels), channels - 1)
            idxs = torch.argsort(scores, stable=True)[:count].tolist()
            if idxs:
                _zero_group_(dg, dg.get_pruning_group(module, pruning_fn, idxs))
            zeroed[root] = len(idxs)
    finally:
        model.zero_grad(set_to_none=True)
    return zeroed
