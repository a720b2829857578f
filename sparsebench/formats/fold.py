"""Deploy-time folding: an inference BatchNorm2d folded exactly into the Conv2d before it.

`scale = gamma / sqrt(running_var + eps)`; the convolution's weight is multiplied by `scale` per
output channel and its bias becomes `(bias - running_mean) * scale + beta`, so the BatchNorm
can be removed. Scaling a row keeps its zeros, so a sparse weight stays exactly as sparse.

Pairs come from a torch.fx trace: the BatchNorm's input must be the convolution's output and
nothing else may read that output (a residual branch reading it would change). A model that
torch.fx cannot trace is left unfolded, with the reason.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx, nn

from ..errors import first_line


def conv_bn_pairs(model: nn.Module) -> tuple[dict[str, str], str]:
    """{conv name: BatchNorm name} that can be folded, and why none could be looked for."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any model that fx cannot trace stays unfolded
        return {}, f"BatchNorm not folded: torch.fx cannot trace the model ({first_line(exc)})"
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = {}
    for node in graph.nodes:
        norm = modules.get(node.target) if node.op == "call_module" else None
        if type(norm) is not nn.BatchNorm2d or norm.running_mean is None or not node.args:
            continue
        source = node.args[0]
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and type(modules.get(source.target)) is nn.Conv2d
            and len(source.users) == 1
            and calls[source.target] == 1
            and calls[node.target] == 1
        ):
            pairs[source.target] = node.target
    return pairs, ""


@torch.no_grad()
def folded_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of `conv` followed by the inference-mode `norm`."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale
    if norm.affine:
        scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias
