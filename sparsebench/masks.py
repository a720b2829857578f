"""Fold pruning masks into plain weights, so a profile reflects the pruned values.

Handles `torch.nn.utils.prune` (`weight_orig` + `weight_mask`) and torch parametrizations
(`parametrizations.weight.original`, with torch.ao's FakeSparsity `mask` buffers), both in a
state_dict and on a live module.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from .errors import SparsebenchError

_PARAM_MARK = ".parametrizations."


def fold_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Return a state_dict with masks multiplied in, and the names of the folded tensors."""
    out: dict[str, torch.Tensor] = {}
    folded: list[str] = []
    masks = {k for k in state if k.endswith("_mask") and k[: -len("_mask")] + "_orig" in state}
    for key, value in state.items():
        if key in masks:
            continue
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in masks:
            name = key[: -len("_orig")]
            out[name] = value * state[name + "_mask"].to(value.dtype)
            folded.append(name)
        elif _PARAM_MARK in key:
            _fold_parametrization(key, value, state, out, folded)
        else:
            out[key] = value
    return out, folded


def _fold_parametrization(key, value, state, out, folded) -> None:
    owner, rest = key.split(_PARAM_MARK, 1)
    tensor_name, leaf = rest.split(".", 1)
    prefix = f"{owner}{_PARAM_MARK}{tensor_name}."
    if leaf != "original":
        if not (leaf.endswith(".mask") and leaf.split(".")[0].isdigit()):
            raise SparsebenchError(
                f"cannot fold parametrization tensor '{key}': only pruning masks can be folded"
            )
        return  # a mask, applied when its `original` is met
    weight = value
    masks = sorted(k for k in state if k.startswith(prefix) and k.endswith(".mask"))
    for mask_key in masks:
        weight = weight * state[mask_key].to(weight.dtype)
    name = f"{owner}.{tensor_name}"
    out[name] = weight
    folded.append(name)


def fold_module_(model: nn.Module) -> list[str]:
    """Make prune hooks and parametrizations permanent in place; returns the folded tensors."""
    folded: list[str] = []
    for module_name, module in model.named_modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
                folded.append(f"{module_name}.{hook._tensor_name}")
        if parametrize.is_parametrized(module):
            for tensor_name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
                folded.append(f"{module_name}.{tensor_name}")
    return folded
