"""`synflow`: data-free pruning at initialisation by iterative synaptic flow conservation.

Tanaka, Kunin, Yamins and Ganguli, "Pruning neural networks without any data by iteratively
conserving synaptic flow", NeurIPS 2020. On a copy of the network with every parameter
replaced by its absolute value, in double precision and with BatchNorm in eval mode, the
input is all ones and R = sum(output); the score of a weight is |dR/dw * w|. Pruning runs
`iterations` rounds (100 in the paper) on an exponential schedule, the density after round k
being (1 - sparsity)^(k / iterations), which avoids layer collapse.
"""

from __future__ import annotations

import copy

import torch

from ...errors import SparsebenchError
from ...inputs import as_batch
from ...measure.sparsity import prunable_layers
from ..base import PruningMethod, apply_masks_, dense_layers, finetune, register_method, top_scores
from ..training import progress_bar


@register_method
class SynFlow(PruningMethod):
    name = "synflow"
    description = "at init, no data: iterative synaptic-flow scores on |w| and an all-ones input"
    paper = "Tanaka et al. 2020, Pruning neural networks without any data by iteratively " \
        "conserving synaptic flow"  # fmt: skip
    needs_example = True
    defaults = {"iterations": 100}

    def prune(self, model, config, data=None, example=None):
        layers = dense_layers(model)
        iterations = self.option(config, "iterations")
        if iterations < 1:
            raise SparsebenchError(f"option 'iterations' of synflow must be >= 1, got {iterations}")
        first = _float_input(example)
        probe = copy.deepcopy(model).double().eval()
        with torch.no_grad():
            for p in probe.parameters():
                p.abs_()
        probe_layers = [(n, m) for n, m in prunable_layers(probe) if n in dict(layers)]
        ones = torch.ones((1, *first.shape[1:]), dtype=torch.float64)
        originals = {name: m.weight.detach().clone() for name, m in probe_layers}
        masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in originals.items()}
        with progress_bar("synflow", iterations, loss=False) as advance:
            for k in range(1, iterations + 1):
                with torch.no_grad():
                    for name, module in probe_layers:
                        module.weight.copy_(originals[name] * masks[name])
                scores = synflow_scores(probe, probe_layers, ones)
                scores = {
                    n: torch.where(masks[n], s, -1.0) for n, s in scores.items()
                }  # pruned stay
                sparsity = 1 - (1 - config.sparsity) ** (k / iterations)
                masks = top_scores(scores, sparsity, config.scope)
                advance()
        apply_masks_(layers, masks)
        return finetune(self, model, layers, config, data)


def synflow_scores(probe, layers, ones: torch.Tensor) -> dict[str, torch.Tensor]:
    """|dR/dw * w| with R = sum(probe(ones)), for each of `layers` of the |w| copy `probe`."""
    weights = [m.weight for _, m in layers]
    with torch.enable_grad():
        for w in weights:
            w.requires_grad_(True)
        grads = torch.autograd.grad(probe(ones).sum(), weights, allow_unused=True)
    return {name: torch.zeros_like(m.weight) if g is None else (g * m.weight).detach().abs()
            for (name, m), g in zip(layers, grads, strict=True)}  # fmt: skip


def _float_input(example) -> torch.Tensor:
    """The model's one float input (SynFlow feeds all ones; token ids have no such input)."""
    batch = as_batch(example)
    if len(batch.tensors) != 1 or not batch.first.is_floating_point():
        raise SparsebenchError(
            "synflow feeds an all-ones input: it needs a model with one float input"
        )
    return batch.first
