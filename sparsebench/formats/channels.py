"""`channels`: all-zero output channels physically removed, leaving a smaller dense model.

Channels whose weights are all zero (what structured pruning or soft masks leave) are cut out
through torch-pruning's dependency graph, so BatchNorm, residual adds and the next layers'
inputs shrink with them; the constant such a channel still carried is folded into the next
layer's bias, or, for a zero-padded conv, into a per-position `bias_map` buffer valid at the
exported input size (`_channel_removal`). With `--ratio R --criterion C` the exporter first
zeroes the least important R of each group's channels (`prune.channel_scoring`) and verifies
against that soft-pruned model. The final layer keeps its outputs. The payload records the
removed channels and the bias maps' layers and shapes, so `restore` replays the same removal
on the freshly built architecture and installs maps of those shapes before loading weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..arch import load_state_dict_strict
from ..errors import SparsebenchError
from ..inputs import InputSpec, InputSpecs, as_batch, dtype_name
from ..measure.sparsity import prunable_layers
from ..metadata import check_shape
from ..options import check_number
from ..prune.channel_scoring import make_importance, soft_prune_, taylor_batch
from ._channel_removal import (
    CONV_TYPES,
    GroupPlan,
    apply_plans_,
    bias_maps,
    build_graph,
    install_bias_map_,
    plan_group,
    probe_inputs,
    prunable_groups,
    replay_,
    trace_layers,
)
from .base import Conversion, ExportConfig, Exporter, LayerReport, register_format, tensor_bytes


@dataclass(frozen=True)
class ChannelsOptions:
    """`ratio`: soft-prune this fraction of each group's channels first (None: remove only
    channels already all zero), scored by `criterion` (l1, l2, bn or taylor)."""

    ratio: float | None = None
    criterion: str = "l1"

    def __post_init__(self):
        if self.ratio is not None:
            check_number("--ratio", self.ratio, at_least=0, below=1)


def _widths(model: nn.Module) -> dict[str, tuple[str, int]]:
    """Kind and output channels (features) of every conv/linear layer."""
    return {
        name: (type(m).__name__, getattr(m, "out_channels", None) or _out_width(m))
        for name, m in prunable_layers(model)
    }


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _folds(plan: GroupPlan) -> list[str]:
    """What the group's removed channels' constants were folded into."""
    folds = []
    if plan.corrections:
        folds.append(f"{len(plan.corrections)} constant(s) folded into next-layer biases")
    if plan.mapped:
        folds.append(
            f"{plan.mapped} constant(s) into zero-padded convs folded as per-position bias maps"
        )
    return folds


def _reason(name: str, plan: GroupPlan | None, final: str | None, zeroed, mapped) -> str:
    if name == final:
        return "final layer: its outputs are the model's outputs"
    if plan is None:
        return "not in a channel group torch-pruning can cut"
    if plan.unsafe:
        return plan.unsafe
    reasons = [f"{n} zero channel(s) kept: {why}" for why, n in plan.kept.items()]
    if isinstance(zeroed.get(plan.root), str):
        reasons.append(zeroed[plan.root])
    if not plan.zero:
        reasons.append("no all-zero output channels")
    reasons += _folds(plan)
    if name in mapped:
        reasons.append(f"adds a per-position bias map for {mapped[name]} removed input(s)")
    return "; ".join(reasons)


def _mapped_inputs(plans: list[GroupPlan], names: dict) -> dict[str, int]:
    """Layer -> removed constant input channels folded into its bias map."""
    mapped: dict[str, int] = {}
    for plan in plans:
        for correction in plan.maps:
            name = names[correction.module]
            mapped[name] = mapped.get(name, 0) + correction.channels
    return mapped


def layer_reports(
    model: nn.Module, before: dict, plans: list[GroupPlan], final: str | None, zeroed: dict
) -> list[LayerReport]:
    """One report per conv/linear layer: widths before and after, why channels stayed and
    where their constants went."""
    by_layer = {producer: plan for plan in plans for producer in plan.producers}
    after = _widths(model)
    modules = dict(model.named_modules())
    mapped = _mapped_inputs(plans, {m: n for n, m in modules.items()})
    reports = []
    for name, (kind, width) in before.items():
        plan, new_width = by_layer.get(name), after[name][1]
        details = {"channels_before": width, "channels_after": new_width}
        details["removed"] = width - new_width
        if plan is not None:
            details["group"] = plan.root
            if isinstance(zeroed.get(plan.root), int):
                details["pruned"] = zeroed[plan.root]
            if plan.corrections:
                details["folded_biases"] = len(plan.corrections)
            if plan.mapped:
                details["folded_maps"] = plan.mapped
        if name in mapped:
            details["bias_map"] = list(modules[name].bias_map.shape)
        action = "removed" if new_width < width else "kept"
        reason = _reason(name, plan, final, zeroed, mapped)
        reports.append(LayerReport(name, kind, action, reason, details))
    return reports


def _notes(before: int, after: int, plans: list[GroupPlan], config: ExportConfig) -> list[str]:
    removed = sum(len(p.removable) for p in plans)
    total = sum(p.channels for p in plans)
    folded = sum(len(p.corrections) for p in plans)
    mapped = sum(p.mapped for p in plans)
    layers = len({c.module for p in plans for c in p.maps})
    notes = [
        f"parameters: {before:,} -> {after:,} ({1 - after / max(before, 1):.1%} fewer)",
        f"channels removed: {removed} of {total} in {sum(bool(p.removable) for p in plans)} "
        f"groups; {folded} non-zero constant(s) of removed channels folded into next-layer biases",
    ]
    if mapped:
        notes.append(
            f"{mapped} constant(s) into zero-padded convs folded as per-position bias maps "
            f"({layers} layer(s) carry one; valid at the exported input size only)"
        )
    options = config.options
    if options.ratio:
        notes.append(
            f"soft-pruned {options.ratio:.0%} of each group's channels by '{options.criterion}' "
            "importance first; verified against that soft-pruned dense model"
        )
    return notes


def _out_width(module: nn.Module) -> int:
    """Output width of a linear-like layer (transformers' Conv1D stores its weight in x out)."""
    if hasattr(module, "out_features"):
        return module.out_features
    return getattr(module, "nf", None) or module.weight.shape[0]


def _example_specs(example) -> list[dict]:
    """The example's inputs (names do not matter to tracing; dtypes and ranges do)."""
    specs = []
    for index, x in enumerate(as_batch(example).tensors):
        bounds = (None, None)
        if not x.is_floating_point() and x.numel():
            bounds = (int(x.min()), int(x.max()))
        specs.append(InputSpec(f"input{index}", tuple(x.shape), dtype_name(x.dtype), *bounds))
    return InputSpecs(tuple(specs)).to_json()


@register_format
class ChannelsExporter(Exporter):
    """Dense model with its all-zero output channels removed (optionally pruned first)."""

    name = "channels"
    options_type = ChannelsOptions
    description = "all-zero output channels removed (torch-pruning DepGraph); --ratio prunes first"

    def convert(self, model: nn.Module, example: torch.Tensor, config: ExportConfig) -> Conversion:
        if config.options.ratio:
            make_importance(config.options.criterion)  # an unknown criterion fails before any work
        model = model.eval()
        names = {m: n for n, m in model.named_modules()}
        widths, params = _widths(model), _params(model)
        trace = trace_layers(model, probe_inputs(example))
        final = trace.order[-1] if trace.order else None
        dg = build_graph(model, example)
        groups = list(prunable_groups(dg, model, final))
        reference, zeroed = None, {}
        if config.options.ratio:
            roots = [root for root, _, unsafe in groups if not unsafe]
            taylor = config.options.criterion == "taylor"
            batch = taylor_batch(model, example, config.data) if taylor else None
            zeroed = soft_prune_(
                model, dg, roots, config.options.ratio, config.options.criterion, batch
            )
            reference = copy.deepcopy(model)
            trace = trace_layers(model, probe_inputs(example))
        plans = [plan_group(dg, root, g, unsafe, trace, names) for root, g, unsafe in groups]
        removed = apply_plans_(model, dg, plans)
        final_name = names.get(final)
        return Conversion(
            model=model,
            layers=layer_reports(model, widths, plans, final_name, zeroed),
            stored_bytes=tensor_bytes(*model.state_dict().values()),
            payload={
                "input_shape": list(as_batch(example).shape),
                "inputs": _example_specs(example),
                "removed": removed,
                "bias_maps": bias_maps(model),
            },
            notes=_notes(params, _params(model), plans, config),
            reference=reference,
        )

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        model = model.eval()
        shape = check_shape(payload.get("input_shape") or [1], "channels artifact", "payload")
        example = torch.zeros([1, *shape[1:]])  # one sample traces the channel groups
        if payload.get("inputs") is not None:
            specs = InputSpecs.from_json(payload["inputs"], "channels artifact payload")
            example = specs.synthetic(seed=0, batch=1)
        replay_(model, example, payload.get("removed", []))
        for name, shape, size in _map_entries(model, payload.get("bias_maps", []), state_dict):
            bias_map = torch.zeros(shape, dtype=model.get_submodule(name).weight.dtype)
            install_bias_map_(model.get_submodule(name), name, bias_map, size)
        load_state_dict_strict(model, state_dict, "channels artifact")
        return model.to(device)


_MAP_ENTRY = "channels artifact payload: bias_maps"


def _map_entries(model: nn.Module, entries, state_dict: dict) -> list[tuple[str, list, list]]:
    """(layer, map shape, input size) of each payload bias map, checked against the rebuilt
    model and the state dict before anything is allocated (payloads come from strangers)."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SparsebenchError(f"{_MAP_ENTRY} must be a list of {{layer, shape, input_size}}")
    modules, checked = dict(model.named_modules()), {}
    for entry in entries:
        name = entry.get("layer")
        if not isinstance(name, str) or type(modules.get(name)) not in CONV_TYPES:
            what = repr(name)[:80]
            raise SparsebenchError(
                f"{_MAP_ENTRY} names {what} which is no Conv1d/2d/3d of the model"
            )
        if name in checked:
            raise SparsebenchError(f"{_MAP_ENTRY} names {name!r} a second time")
        conv = modules[name]
        shape, size = entry.get("shape"), entry.get("input_size")
        _check_ints(shape, conv.weight.dim() - 1, f"shape of {name}")
        _check_ints(size, conv.weight.dim() - 2, f"input_size of {name}")
        expected = [conv.out_channels, *_out_size(conv, size)]
        if shape != expected:
            raise SparsebenchError(
                f"{_MAP_ENTRY}: the map of {name} is {shape}, but the conv gives {expected} "
                f"for {size} inputs"
            )
        stored = state_dict.get(f"{name}.bias_map")
        if not isinstance(stored, torch.Tensor) or list(stored.shape) != shape:
            found = list(stored.shape) if isinstance(stored, torch.Tensor) else "none"
            raise SparsebenchError(
                f"{_MAP_ENTRY}: the map of {name} is {shape}, the state dict's {found}"
            )
        checked[name] = (name, shape, size)
    return list(checked.values())


def _out_size(conv: nn.Module, size: list[int]) -> list[int]:
    """Spatial output size of `conv` on inputs of spatial `size` (on the meta device)."""
    x = torch.empty(1, conv.in_channels, *size, device="meta")
    return list(conv._conv_forward(x, conv.weight.to("meta"), None).shape[2:])


def _check_ints(value, length: int, what: str) -> None:
    """Refuse anything but a list of `length` positive ints, in one line."""
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise SparsebenchError(
            f"{_MAP_ENTRY}: {what} must be a list of {length} positive ints, not {value!r}"[:300]
        )
