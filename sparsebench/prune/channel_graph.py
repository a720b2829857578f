"""torch-pruning's channel dependency graph of a model, and what it says about channels.

`build_graph` traces the dependency groups (a conv's output channels coupled with its
BatchNorm, residual adds and the next layers' inputs); `prunable_groups` yields each conv/linear
group with the reason, if any, why removing one of its channels could change the outputs
(grouped or transposed convs, norms across channels, ops not known to act on each channel
apart). `trace_layers` records what each layer sees on probe inputs. The channel pruning
methods score and zero channels on it; the `channels` format removes them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from ..errors import SparsebenchError, first_line
from ..inputs import Batch, as_batch, call

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
ROOT_TYPES = (*CONV_TYPES, nn.Linear)
OPTYPE = tp.ops.OPTYPE
_MODULE_TYPES = {OPTYPE.CONV, OPTYPE.DEPTHWISE_CONV, OPTYPE.LINEAR, OPTYPE.BN, OPTYPE.PRELU}
_INDEX_TYPES = {OPTYPE.RESHAPE, OPTYPE.CONCAT, OPTYPE.SPLIT}
_NORMS = {OPTYPE.LN, OPTYPE.GN, OPTYPE.IN}
# autograd ops known to act on each channel apart (a constant channel stays constant)
_CHANNELWISE_OPS = re.compile(
    r"(Relu|Gelu|Silu|Sigmoid|Tanh|Hardswish|Hardsigmoid|Hardtanh|LeakyRelu|Elu|Softplus|Add|Sub"
    r"|Mul|Div|Neg|Clone|MaxPool\d?D?(WithIndices)?|AvgPool\d?D?|AdaptiveAvgPool\d?D?"
    r"|AdaptiveMaxPool\d?D?|Addmm|T|Transpose|Permute|View|Reshape|Unsqueeze|Squeeze"
    r"|Upsample\w*|Cat|Split\w*|Expand|Dropout)Backward\d*"
)
_REDUCTIONS = re.compile(r"(Mean|Sum)Backward1")  # over given dims (Backward0: over all)
_PROBE_SAMPLES = 3


@dataclass
class LayerTrace:
    """Inputs each conv/linear layer saw on a probe batch, and how often it ran."""

    inputs: dict[nn.Module, torch.Tensor]
    calls: Counter
    order: list[nn.Module]


def build_graph(model: nn.Module, example: Batch | torch.Tensor) -> tp.DependencyGraph:
    """torch-pruning's dependency graph of `model`, traced on `example`."""
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=tuple(as_batch(example).tensors), verbose=False
            )
    except Exception as exc:  # the model is user code: any tracing failure is the user's to see
        raise SparsebenchError(
            f"torch-pruning could not trace the model's channel dependencies: {first_line(exc)}"
        ) from exc


def probe_inputs(example: Batch | torch.Tensor) -> Batch:
    """`example` and a few seeded random samples: constants must hold on all of them.
    Integer inputs (token ids, masks) take random values within the example's range."""
    generator = torch.Generator().manual_seed(7)
    tensors = []
    for x in as_batch(example).tensors:
        shape = (_PROBE_SAMPLES, *x.shape[1:])
        if x.is_floating_point():
            extra = torch.randn(shape, generator=generator).to(x.dtype)
        elif x.numel() and x.dtype != torch.bool:
            low, high = int(x.min()), int(x.max())
            extra = torch.randint(low, high + 1, shape, generator=generator).to(x.dtype)
        else:
            extra = x[:1].expand(shape).clone()
        tensors.append(torch.cat([x, extra.to(x.device)]))
    return Batch(tuple(tensors))


def trace_layers(model: nn.Module, inputs: Batch | torch.Tensor) -> LayerTrace:
    """Run `model` once, recording each conv/linear layer's first input."""
    trace = LayerTrace({}, Counter(), [])

    def record(module, args, _output):
        trace.calls[module] += 1
        if trace.calls[module] == 1:
            trace.order.append(module)
            trace.inputs[module] = args[0].detach().clone()

    handles = [
        m.register_forward_hook(record) for m in model.modules() if isinstance(m, ROOT_TYPES)
    ]
    try:
        with torch.no_grad():
            call(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return trace


def _is_out(dg: tp.DependencyGraph, dep) -> bool:
    return dg.is_out_channel_pruning_fn(dep.handler)


def _op_name(node) -> str:
    grad_fn = getattr(node, "grad_fn", None)
    return grad_fn.name() if grad_fn is not None else type(node.module).__name__


def _reduces_channels(grad_fn, channels: int) -> bool:
    """Whether a mean/sum may reduce over the channel dim (any dim of the channel count's size)."""
    sizes = tuple(grad_fn._saved_self_sym_sizes)
    dims = [(d - 2**64 if d >= 2**63 else d) % len(sizes) for d in grad_fn._saved_dim]
    return channels not in sizes or any(sizes[d] == channels for d in dims)


def _op_reason(node, channels: int) -> str:
    op = _op_name(node)
    if "Attention" in op:
        return (
            f"attention dims (through {op}): q/k and v/out dims are coupled per head, and "
            "removing one would change the head split and the softmax scale"
        )
    if _REDUCTIONS.fullmatch(op):
        if _reduces_channels(node.grad_fn, channels):
            return f"channels pass through {op}, which may reduce over channels"
        return ""
    if not _CHANNELWISE_OPS.fullmatch(op):
        return f"channels pass through {op}, not known to act on each channel apart"
    return ""


def unsafe_reason(group, names: dict[nn.Module, str]) -> str:
    """Why removing any channel of `group` could change outputs; "" when it cannot."""
    channels = len(group[0].idxs)
    for dep, _ in group:
        node, module = dep.target, dep.target.module
        label = names.get(module, node.name)
        if node.type in _MODULE_TYPES:
            if isinstance(module, nn.modules.conv._ConvNd):
                if module.transposed:
                    return f"channels shared with transposed conv {label}"
                if module.groups not in (1, module.out_channels):
                    return f"channels shared with grouped conv {label}"
            continue
        if node.type in _NORMS:
            kind = type(module).__name__
            return f"channels shared with {label}, a {kind} that normalises across channels"
        if node.type == OPTYPE.ELEMENTWISE:
            reason = _op_reason(node, channels)
            if reason:
                return reason
            continue
        if node.type not in _INDEX_TYPES:
            return f"channels shared with {label} ({node.type.name}), which removal does not handle"
    return ""


def prunable_groups(dg: tp.DependencyGraph, model: nn.Module, final: nn.Module | None):
    """(root name, group, unsafe reason) per conv/linear group, the final layer's excluded."""
    names = {m: n for n, m in model.named_modules()}
    ignored = [final] if final is not None else []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES):
        root = group[0].dep.target.module
        yield names[root], group, unsafe_reason(group, names)
