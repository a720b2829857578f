"""`rigl`: dynamic sparse training, drop by magnitude and grow by gradient.

Evci, Gale, Menick, Castro and Elsen, "Rigging the Lottery: Making All Tickets Winners", ICML
2020. Training starts sparse at the requested sparsity (`init`: "random", the paper's
uniform per-layer mask, or "magnitude"). Every `delta` steps until `end` of the training, each
layer drops the fraction f_t = alpha / 2 * (1 + cos(pi t / T_end)) of its active weights with
the smallest |w| and grows as many inactive ones with the largest |dL/dw'| (the dense gradient
of the masked weight), the grown weights starting at zero. Each layer keeps its count, so the
sparsity never moves.
"""

from __future__ import annotations

import math

import torch

from ...errors import SparsebenchError
from ..base import PruningMethod, dense_layers, reached, register_method, top_scores
from ..training import dense_weight, masked, train


@register_method
class RigL(PruningMethod):
    name = "rigl"
    description = "dynamic sparse training: drop smallest |w|, grow largest |grad| every delta"
    paper = "Evci et al. 2020, Rigging the Lottery: Making All Tickets Winners"
    needs_data = True
    defaults = {"alpha": 0.3, "delta": 100, "end": 0.75, "init": "random"}
    trains = True

    def prune(self, model, config, data=None):
        alpha, delta, end = (self.option(config, k) for k in ("alpha", "delta", "end"))
        init = self.option(config, "init")
        if (
            not 0 < alpha < 1
            or delta < 1
            or not 0 < end <= 1
            or init not in ("random", "magnitude")
        ):
            raise SparsebenchError(
                "rigl needs 0 < alpha < 1, delta >= 1, 0 < end <= 1 and init random or magnitude"
            )
        if data.epochs < 1:
            raise SparsebenchError("rigl trains sparse: pass --epochs 1 or more")
        layers = dense_layers(model)
        if init == "random":
            generator = torch.Generator().manual_seed(config.seed)
            scores = {n: torch.rand(m.weight.shape, generator=generator) for n, m in layers}
        else:
            scores = {n: m.weight.detach().abs() for n, m in layers}
        masks = top_scores(scores, config.sparsity, config.scope)
        with torch.no_grad():
            for name, module in layers:
                module.weight.mul_(masks[name])
        t_end = int(end * data.epochs * data.steps_per_epoch)
        updates = []
        with masked(layers, masks) as attached:

            def update(step: int) -> None:
                if step == 0 or step % delta or step >= t_end:
                    return
                fraction = alpha / 2 * (1 + math.cos(math.pi * step / t_end))
                moved = 0
                for name, module in layers:
                    moved += _drop_grow(attached[name], dense_weight(module), fraction)
                updates.append({"step": step, "fraction": fraction, "moved": moved})

            stats = train(model, data, data.epochs, config.seed, "rigl", after_backward=update)
        result = reached(self, layers, config)
        moved = sum(u["moved"] for u in updates)
        result.extra.update({"train": stats, "updates": len(updates), "moved": moved,
                             "first_update": updates[0] if updates else None})  # fmt: skip
        return result


def _drop_grow(mask, weight: torch.Tensor, fraction: float) -> int:
    """Drop `fraction` of the active weights by |w| and grow as many by |grad|, in place.

    Runs after backward and before the optimizer step; grown weights are set to zero, as in
    the paper. Grow candidates are the weights inactive before this drop.
    """
    active = mask.mask.flatten()
    count = int(fraction * int(active.sum()))
    inactive = int((~active).sum())
    count = min(count, inactive)
    if count == 0 or mask.grad is None:
        return 0
    w = weight.detach().flatten().abs()
    drop = torch.topk(torch.where(active, -w, -math.inf), count).indices
    new = active.clone()
    new[drop] = False
    grad = mask.grad.flatten().abs()
    grow = torch.topk(torch.where(active, -math.inf, grad), count).indices  # never regrow drops
    new[grow] = True
    with torch.no_grad():
        weight.view(-1)[grow] = 0.0
    mask.mask.copy_(new.view_as(mask.mask))
    return count
