"""Remove all-zero output channels exactly, through torch-pruning's dependency graph.

A channel whose producing conv/linear weights are all zero carries a constant (its bias, through
BatchNorm, activations and residual adds). Removing it keeps the outputs when every consumer
absorbs that constant: it is 0, or the consumer is a Linear, or a conv that never sees zero
padding, with a bias to fold `W[:, channel] * constant` into. A zero-padded conv sees 0 instead
of the constant near its borders, so there the contribution is not uniform; but for the fixed
input size it is a fixed per-position map, `conv(constant input, W, no bias)`, and conv is
linear, so the dead channels of one consumer sum into one map of shape (out, *out_spatial). An
ungrouped Conv1d/2d/3d that runs once takes it as a `bias_map` buffer (`BiasMapConv2d` and
kin), computed on the unpruned model, then cut to the conv's own surviving output channels.
Otherwise the channel stays, and the plan says why. A torch-pruning group couples channels
across layers (residual adds, BN, the next layer's inputs), so a channel goes only when it is
zero in every producer of its group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ..errors import SparsebenchError
from ..inputs import Batch
from ..prune.channel_graph import (  # noqa: F401 - the exporter's and tests' names
    CONV_TYPES,
    OPTYPE,
    ROOT_TYPES,
    LayerTrace,
    _is_out,
    build_graph,
    probe_inputs,
    prunable_groups,
    trace_layers,
    unsafe_reason,
)

_CONSTANT_RTOL = 1e-6
_CONSTANT_RTOL = 1e-6
FOLD_BIAS_MAPS = True  # False: keep channels whose constant meets zero padding (the old rule)


@torch.fx.wrap  # a leaf call under torch.fx, plain Python under tracing and in eager mode
def _check_map_input(x: torch.Tensor, size: tuple[int, ...], layer: str) -> torch.Tensor:
    """`x`, if its spatial size is the one `layer`'s bias map was computed for."""
    if tuple(x.shape[2:]) != tuple(size):
        got, made = "x".join(map(str, x.shape[2:])), "x".join(map(str, size))
        raise SparsebenchError(
            f"{layer} adds a per-position bias map made for {made} inputs, not {got}: "
            "run this channels artifact at the input size it was exported with"
        )
    return x


class _BiasMapped:
    """A conv plus `bias_map`, the fixed per-position output of removed constant input
    channels, valid for inputs of spatial size `map_input_size` only."""

    bias_map: torch.Tensor
    map_input_size: tuple[int, ...]
    map_layer: str

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_map_input(x, self.map_input_size, self.map_layer)
        return super().forward(x) + self.bias_map

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias_map={tuple(self.bias_map.shape)}"


class BiasMapConv1d(_BiasMapped, nn.Conv1d):
    """`nn.Conv1d` plus a per-position bias map."""


class BiasMapConv2d(_BiasMapped, nn.Conv2d):
    """`nn.Conv2d` plus a per-position bias map."""


class BiasMapConv3d(_BiasMapped, nn.Conv3d):
    """`nn.Conv3d` plus a per-position bias map."""


_MAPPED = {nn.Conv1d: BiasMapConv1d, nn.Conv2d: BiasMapConv2d, nn.Conv3d: BiasMapConv3d}


@dataclass
class GroupPlan:
    """One torch-pruning group: its zero channels, those removed, and why the others stay."""

    root: str
    producers: list[str]
    channels: int
    unsafe: str = ""  # why no channel of this group may be removed
    zero: list[int] = field(default_factory=list)
    removable: list[int] = field(default_factory=list)
    kept: Counter = field(default_factory=Counter)  # reason -> zero channels kept for it
    corrections: list[tuple[nn.Module, torch.Tensor]] = field(default_factory=list)
    maps: list[MapCorrection] = field(default_factory=list)  # one per zero-padded consumer
    lost: dict[nn.Module, set[int]] = field(default_factory=dict)  # conv -> its removed outputs

    @property
    def mapped(self) -> int:
        """Constants of removed channels folded into per-position bias maps."""
        return sum(m.channels for m in self.maps)


@dataclass
class MapCorrection:
    """What the removed constant channels add to a zero-padded conv's output, per position."""

    module: nn.Module
    bias_map: torch.Tensor  # (out_channels, *out_spatial) of the unpruned conv
    input_size: tuple[int, ...]
    channels: int  # removed constant input channels summed into it


def _zero_channels(dg, group) -> list[int]:
    zero: dict[int, bool] = {}
    for item in group:
        module = item.dep.target.module
        if not (_is_out(dg, item.dep) and isinstance(module, ROOT_TYPES)):
            continue
        rows = module.weight.detach()[item.idxs].flatten(1)
        for root, is_zero in zip(item.root_idxs, (rows.abs().amax(1) == 0).tolist(), strict=True):
            zero[root] = zero.get(root, True) and is_zero
    return sorted(root for root, is_zero in zero.items() if is_zero)


def _constant(values: torch.Tensor) -> float | None:
    flat = values.reshape(-1).double()
    first = flat[0]
    constant = bool(((flat - first).abs() <= _CONSTANT_RTOL * first.abs()).all())
    return float(first) if constant else None


def _zero_padded(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether conv `module` sees zero padding (0, not the constant, near its borders)."""
    if not isinstance(module, CONV_TYPES) or module.padding_mode != "zeros":
        return False
    return module.padding not in ("valid", (0,) * (x.dim() - 2))


def _map_refusal(module: nn.Module, name: str) -> str:
    """Why zero-padded conv `module` cannot take a per-position bias map; "" when it can."""
    if not FOLD_BIAS_MAPS:
        return f"non-zero constant into zero-padded conv {name}"
    if type(module) not in _MAPPED and not isinstance(module, _BiasMapped):
        return f"non-zero constant into zero-padded {type(module).__name__} {name} (a subclass)"
    if module.groups != 1:
        return f"non-zero constant into zero-padded grouped conv {name}"
    return ""


def _absorb(module: nn.Module, name: str, index: int, trace: LayerTrace):
    """How `module` absorbs its constant input `index`: (bias delta, None, ""), or (None,
    constant, "") for a per-position bias map, (None, None, "") for a 0, or a reason it cannot."""
    if trace.calls[module] != 1:
        return None, None, f"consumer {name} runs {trace.calls[module]} times"
    x = trace.inputs[module]
    k = _constant(x[..., index] if isinstance(module, nn.Linear) else x[:, index])
    if k is None:
        return None, None, f"input {index} of {name} is not constant"
    if k == 0:
        return None, None, ""
    if _zero_padded(module, x):  # borders see 0, not k: a map, which needs no bias
        reason = _map_refusal(module, name)
        return None, None if reason else k, reason
    if module.bias is None:
        return None, None, f"non-zero constant into bias-free {name}"
    column = module.weight.detach()[:, index]
    return column.reshape(column.shape[0], -1).sum(1) * k, None, ""


def constant_map(module: nn.Module, constants: dict[int, float], size) -> torch.Tensor:
    """What input channels holding constants {index: k} add to conv `module`'s output at each
    position, for inputs of spatial `size` (computed in float64)."""
    weight = module.weight.detach()
    x = torch.zeros(1, module.in_channels, *size, dtype=torch.float64, device=weight.device)
    for index, k in constants.items():
        x[0, index] = k
    with torch.no_grad():
        return module._conv_forward(x, weight.double(), None)[0].to(weight.dtype)


def _map_corrections(mapped: list[tuple[nn.Module, int, float]], trace) -> list[MapCorrection]:
    """One summed map per consumer of the removed channels' (consumer, input, constant)."""
    by_module: dict[nn.Module, dict[int, float]] = {}
    for module, index, k in mapped:
        by_module.setdefault(module, {})[index] = k
    corrections = []
    for module, constants in by_module.items():
        size = tuple(trace.inputs[module].shape[2:])
        bias_map = constant_map(module, constants, size)
        corrections.append(MapCorrection(module, bias_map, size, len(constants)))
    return corrections


def _lost_outputs(dg, group, removable: list[int]) -> dict[nn.Module, set[int]]:
    """conv -> the output channels it loses when the group's `removable` roots go."""
    roots, lost = set(removable), {}
    for item in group:
        module = item.dep.target.module
        if _is_out(dg, item.dep) and isinstance(module, CONV_TYPES):
            idxs = {i for i, r in zip(item.idxs, item.root_idxs, strict=True) if r in roots}
            lost.setdefault(module, set()).update(idxs)
    return lost


def plan_group(dg, root: str, group, unsafe: str, trace: LayerTrace, names) -> GroupPlan:
    """Which zero channels of `group` can go, and the bias and map corrections that keep
    outputs."""
    modules = [i.dep.target.module for i in group if _is_out(dg, i.dep)]
    producers = [names[m] for m in modules if isinstance(m, ROOT_TYPES)]
    channels = len(group[0].idxs)
    plan = GroupPlan(root, producers, channels, unsafe)
    if unsafe:
        return plan
    plan.zero = _zero_channels(dg, group)
    zero, reasons = set(plan.zero), {}
    deltas: dict[int, list[tuple[nn.Module, torch.Tensor]]] = {r: [] for r in zero}
    mapped: dict[int, list[tuple[nn.Module, int, float]]] = {r: [] for r in zero}
    for item in group:
        module = item.dep.target.module
        if _is_out(dg, item.dep) or not isinstance(module, ROOT_TYPES):
            continue
        for index, root_idx in zip(item.idxs, item.root_idxs, strict=True):
            if root_idx in zero and root_idx not in reasons:
                delta, k, reason = _absorb(module, names[module], index, trace)
                if reason:
                    reasons[root_idx] = reason
                elif delta is not None:
                    deltas[root_idx].append((module, delta))
                elif k is not None:
                    mapped[root_idx].append((module, index, k))
    plan.removable = [r for r in plan.zero if r not in reasons]
    if len(plan.removable) == channels:  # an empty layer would not run
        reasons[plan.removable.pop()] = "one channel kept so the layer is not empty"
    plan.kept = Counter(reasons.values())
    plan.corrections = [d for r in plan.removable for d in deltas[r]]
    plan.maps = _map_corrections([m for r in plan.removable for m in mapped[r]], trace)
    plan.lost = _lost_outputs(dg, group, plan.removable)
    return plan


def apply_plans_(model: nn.Module, dg: tp.DependencyGraph, plans: list[GroupPlan]) -> list[dict]:
    """Fold the constants into biases and bias maps, then remove the channels; returns what
    `replay_` needs. Maps are summed on the unpruned model, then cut to the surviving outputs."""
    with torch.no_grad():
        for plan in plans:
            for module, delta in plan.corrections:
                module.bias += delta.to(module.bias.dtype)
    maps = _summed_maps(model, plans)
    removed = []
    for plan in plans:
        if plan.removable:
            _prune_out(dg, model.get_submodule(plan.root), plan.removable)
            removed.append({"layer": plan.root, "channels": list(plan.removable)})
    lost = {module: idxs for plan in plans for module, idxs in plan.lost.items()}
    names = {m: n for n, m in model.named_modules()}
    for module, (bias_map, size) in maps.items():
        keep = [c for c in range(bias_map.shape[0]) if c not in lost.get(module, ())]
        install_bias_map_(module, names[module], bias_map[keep], size)
    return removed


def _summed_maps(model: nn.Module, plans: list[GroupPlan]) -> dict:
    """conv -> (its total bias map over all groups, and any map it had, input size)."""
    maps = {
        m: (m.bias_map.detach().clone(), m.map_input_size)
        for m in model.modules()
        if isinstance(m, _BiasMapped)
    }
    for plan in plans:
        for c in plan.maps:
            total = maps[c.module][0] + c.bias_map if c.module in maps else c.bias_map
            maps[c.module] = (total, c.input_size)
    return maps


def install_bias_map_(module: nn.Module, name: str, bias_map: torch.Tensor, size) -> nn.Module:
    """Make conv `module` add `bias_map` (a buffer) to its output, for inputs of spatial `size`."""
    if not isinstance(module, _BiasMapped):
        module.__class__ = _MAPPED[type(module)]
    module._buffers.pop("bias_map", None)
    module.register_buffer("bias_map", bias_map.detach().clone())
    module.map_input_size, module.map_layer = tuple(size), name
    return module


def bias_maps(model: nn.Module) -> list[dict]:
    """Layer, map shape and input size of every conv that carries a bias map (the payload)."""
    return [
        {"layer": name, "shape": list(m.bias_map.shape), "input_size": list(m.map_input_size)}
        for name, m in model.named_modules()
        if isinstance(m, _BiasMapped)
    ]


def _prune_out(dg: tp.DependencyGraph, module: nn.Module, channels: list[int]) -> None:
    pruning_fn = dg.get_pruner_of_module(module).prune_out_channels
    dg.get_pruning_group(module, pruning_fn, idxs=list(channels)).prune()


def replay_(model: nn.Module, example: Batch | torch.Tensor, removed: list[dict]) -> nn.Module:
    """Remove the recorded channels from a freshly built `model`, in the recorded order."""
    if removed:
        dg = build_graph(model, example)
        for entry in removed:
            _prune_out(dg, model.get_submodule(entry["layer"]), entry["channels"])
    return model
