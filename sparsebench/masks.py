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
    """Return a state_dict with masks multiplied in, and the names of the folded tensors.

    A mask must have exactly its weight's shape: a file's masks are never broadcast.
    """
    out: dict[str, torch.Tensor] = {}
    folded: list[str] = []
    masks = {k for k in state if k.endswith("_mask") and k[: -len("_mask")] + "_orig" in state}
    groups = _parametrization_masks(state)
    for key, value in state.items():
        if key in masks:
            continue
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in masks:
            name = key[: -len("_orig")]
            out[name] = _masked(value, [state[name + "_mask"]], name)
            folded.append(name)
        elif _PARAM_MARK in key:
            owner, tensor_name, leaf = _split_parametrization(key)
            if leaf == "original":
                name = f"{owner}.{tensor_name}"
                out[name] = _masked(value, groups.get((owner, tensor_name), []), name)
                folded.append(name)
        else:
            out[key] = value
    return out, folded


def _split_parametrization(key: str) -> tuple[str, str, str]:
    """(owner, tensor name, leaf) of `owner.parametrizations.NAME.LEAF`; only pruning masks."""
    owner, rest = key.split(_PARAM_MARK, 1)
    tensor_name, _, leaf = rest.partition(".")
    is_mask = leaf.endswith(".mask") and leaf.split(".")[0].isdigit()
    if not tensor_name or not (leaf == "original" or is_mask):
        raise SparsebenchError(
            f"cannot fold parametrization tensor '{key}': only pruning masks can be folded"
        )
    return owner, tensor_name, leaf


def _parametrization_masks(state: dict) -> dict[tuple[str, str], list[torch.Tensor]]:
    """The masks of every parametrized tensor, grouped in one pass over the keys."""
    groups: dict[tuple[str, str], list[tuple[str, torch.Tensor]]] = {}
    for key, value in state.items():
        if _PARAM_MARK in key:
            owner, tensor_name, leaf = _split_parametrization(key)
            if leaf != "original":
                groups.setdefault((owner, tensor_name), []).append((leaf, value))
    return {
        name: [v for _, v in sorted(items, key=lambda kv: kv[0])] for name, items in groups.items()
    }


def _masked(weight: torch.Tensor, masks: list[torch.Tensor], name: str) -> torch.Tensor:
    for mask in masks:
        if mask.layout != torch.strided or tuple(mask.shape) != tuple(weight.shape):
            raise SparsebenchError(
                f"cannot fold the mask of '{name}': shape {list(mask.shape)} is not the "
                f"weight's {list(weight.shape)}"
            )
        weight = weight * mask.to(weight.dtype)
    return weight


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
