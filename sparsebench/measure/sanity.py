"""Sanity checks of a pruned model: layers pruned to nothing, and outputs that ignore the input.

A global L1 ranking can zero every weight of a layer whose weights are small (a classifier head,
typically). Such a model still verifies (its converted formats reproduce the constant output)
and its speedups still look real, but every figure about its accuracy is meaningless: these
checks say so.
"""

from __future__ import annotations

import torch
from torch import nn

from .sparsity import nonzero_count

# weight-bearing modules whose weights are not a linear map of the input: never "empty layers"
_NOT_LAYERS = (nn.Embedding, nn.EmbeddingBag)
_NOT_LAYER_NAMES = ("norm", "embedding")


def _is_weight_layer(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        return False
    if isinstance(module, _NOT_LAYERS):
        return False
    kind = type(module).__name__.lower()
    return not any(part in kind for part in _NOT_LAYER_NAMES)


def empty_layers(model: nn.Module) -> list[str]:
    """Names of weight-bearing layers (Linear, Conv*, transformers' Conv1D, converted sparse
    layers: any module with a `weight` of dim >= 2 that is not an embedding or a norm) whose
    weight is 100 % zeros. Such a layer outputs its bias whatever its input."""
    names = []
    for name, module in model.named_modules():
        if _is_weight_layer(module) and module.weight.numel() > 0:
            if nonzero_count(module.weight) == 0:
                names.append(name or "(root)")
    return names


def _as_tensor(outputs: object) -> torch.Tensor | None:
    """The tensor of a model's outputs: itself, `.logits`, or the first of a tuple/list."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    return None


def constant_outputs(outputs: torch.Tensor, atol_rel: float = 1e-6) -> bool:
    """Whether a batch of >= 2 samples gave the same output for every sample (or all zeros).

    Same means max |out - out[0]| <= atol_rel * max(|out|) (or the smallest positive float when
    every output is zero). A batch of one sample, or outputs with NaNs, are never "constant".
    """
    tensor = _as_tensor(outputs)
    if tensor is None or tensor.dim() == 0 or tensor.shape[0] < 2:
        return False
    flat = tensor.detach().to(torch.float64).reshape(tensor.shape[0], -1)
    if flat.numel() == 0 or not bool(torch.isfinite(flat).all()):
        return False
    scale = max(float(flat.abs().max()), torch.finfo(torch.float64).tiny)
    return float((flat - flat[0]).abs().max()) <= atol_rel * scale


def empty_layer_warning(name: str) -> str:
    """The warning about one layer whose weights are all zero."""
    return f"layer {name} is 100 % sparse (all weights zero): its outputs are constant"


CONSTANT_OUTPUTS_WARNING = (
    "outputs are the same for every input (constant): verification error and accuracy deltas "
    "say nothing about this model"
)


def sanity_warnings(
    model: nn.Module, outputs: torch.Tensor | None = None
) -> tuple[list[str], dict[str, object]]:
    """Warnings and JSON flags about `model` and its `outputs` on a batch of different inputs.

    Flags: `{"empty_layers": [names], "constant_outputs": bool}`; without `outputs` (nothing
    was run) `constant_outputs` is False.
    """
    empty = empty_layers(model)
    constant = outputs is not None and constant_outputs(outputs)
    warnings = [empty_layer_warning(name) for name in empty]
    if constant:
        warnings.append(CONSTANT_OUTPUTS_WARNING)
    return warnings, {"empty_layers": empty, "constant_outputs": constant}
