"""`channels`: all-zero output channels physically removed, leaving a smaller dense model.

Channels whose weights are all zero (what structured pruning or soft masks leave) are cut out
through torch-pruning's dependency graph, so BatchNorm, residual adds and the next layers'
inputs shrink with them; the constant such a channel still carried is folded into the next
layer's bias (`_channel_removal`). With `--ratio R --criterion C` the exporter first zeroes the
least important R of each group's channels (`_channel_scoring`) and verifies against that
soft-pruned model. The final layer keeps its outputs. The payload records the removed channels,
so `restore` replays the same removal on the freshly built architecture before loading weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..arch import load_state_dict_strict
from ..inputs import InputSpec, InputSpecs, as_batch, dtype_name
from ..measure.sparsity import prunable_layers
from ..metadata import check_shape
from ..options import check_number
from ._channel_removal import (
    GroupPlan,
    apply_plans_,
    build_graph,
    plan_group,
    probe_inputs,
    prunable_groups,
    replay_,
    trace_layers,
)
from ._channel_scoring import make_importance, soft_prune_, taylor_batch
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


def _reason(name: str, plan: GroupPlan | None, final: str | None, zeroed) -> str:
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
    return "; ".join(reasons)


def layer_reports(
    model: nn.Module, before: dict, plans: list[GroupPlan], final: str | None, zeroed: dict
) -> list[LayerReport]:
    """One report per conv/linear layer: widths before and after, and why channels stayed."""
    by_layer = {producer: plan for plan in plans for producer in plan.producers}
    after = _widths(model)
    reports = []
    for name, (kind, width) in before.items():
        plan, new_width = by_layer.get(name), after[name][1]
        details = {"channels_before": width, "channels_after": new_width}
        details["removed"] = width - new_width
        if plan is not None:
            details["group"] = plan.root
            if isinstance(zeroed.get(plan.root), int):
                details["pruned"] = zeroed[plan.root]
        action = "removed" if new_width < width else "kept"
        reports.append(LayerReport(name, kind, action, _reason(name, plan, final, zeroed), details))
    return reports


def _notes(before: int, after: int, plans: list[GroupPlan], config: ExportConfig) -> list[str]:
    removed = sum(len(p.removable) for p in plans)
    total = sum(p.channels for p in plans)
    folded = sum(len(p.corrections) for p in plans)
    notes = [
        f"parameters: {before:,} -> {after:,} ({1 - after / max(before, 1):.1%} fewer)",
        f"channels removed: {removed} of {total} in {sum(bool(p.removable) for p in plans)} "
        f"groups; {folded} non-zero constant(s) of removed channels folded into next-layer biases",
    ]
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
        load_state_dict_strict(model, state_dict, "channels artifact")
        return model.to(device)
