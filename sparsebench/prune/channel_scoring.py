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
from ..errors import SparsebenchError
from ..inputs import Batch, as_batch, call
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


def taylor_batch(model: nn.Module, example: Batch | torch.Tensor, data: str | None):
    """Inputs and labels for Taylor scores: `data`'s train split, else pseudo-labelled noise."""
    example = as_batch(example)
    if data:
        if len(example.tensors) > 1:
            raise SparsebenchError("--data feeds one input; this model takes several")
        first = example.first
        dataset = load_dataset(data, "train")
        x = fit_samples(dataset.x[:TAYLOR_SAMPLES], tuple(first.shape)).to(first.dtype)
        return Batch((x,)), dataset.y[:TAYLOR_SAMPLES].long()
    x = Batch(tuple(_noise_like(t, i) for i, t in enumerate(example.tensors)))
    with torch.no_grad():
        return x, call(model, x).argmax(dim=-1)


def _noise_like(x: torch.Tensor, index: int) -> torch.Tensor:
    """TAYLOR_SAMPLES seeded samples shaped like `x`'s: normal floats, integers in its range."""
    generator = torch.Generator().manual_seed(11 + index)
    shape = (TAYLOR_SAMPLES, *x.shape[1:])
    if x.is_floating_point():
        return torch.randn(shape, generator=generator).to(x.dtype)
    low, high = (int(x.min()), int(x.max())) if x.numel() else (0, 0)
    return torch.randint(low, high + 1, shape, generator=generator).to(x.dtype)


def _accumulate_gradients(model: nn.Module, inputs, labels: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        logits = call(model, inputs)
        F.cross_entropy(logits, labels.to(logits.device)).backward()


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
    chosen = []
    try:  # every group is scored on the unpruned model, so the order of the roots does not matter
        for root in roots:
            module = model.get_submodule(root)
            pruning_fn = dg.get_pruner_of_module(module).prune_out_channels
            channels = dg.get_out_channels(module)
            scores = importance(dg.get_pruning_group(module, pruning_fn, list(range(channels))))
            if scores is None:
                zeroed[root] = f"the {criterion} criterion does not score this group"
                continue
            count = min(int(ratio * channels), channels - 1)
            chosen.append((root, module, pruning_fn, torch.argsort(scores, stable=True)[:count]))
    finally:
        model.zero_grad(set_to_none=True)
    for root, module, pruning_fn, idxs in chosen:
        if len(idxs):
            _zero_group_(dg, dg.get_pruning_group(module, pruning_fn, idxs.tolist()))
        zeroed[root] = len(idxs)
    return zeroed
