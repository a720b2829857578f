"""`movement`: hard movement pruning during fine-tuning.

Sanh, Wolf and Rush, "Movement Pruning: Adaptive Sparsity by Fine-Tuning", NeurIPS 2020. The
score of a weight accumulates -dL/dw' * w over the training steps (w' the masked weight, with
the straight-through gradient reaching pruned weights too), so weights moving away from zero
gain score and weights shrinking toward zero lose it, whatever their size. The mask keeps the
top scores (per layer, or over all layers with `--scope global`) and follows the paper's cubic
schedule: dense for the first `warmup` fraction of the `--epochs` steps, then sparsity
s_t = s_f + (0 - s_f) * (1 - progress)^3, then the final sparsity for the last `cooldown`
fraction. The mask is recomputed every `update_every` steps.
"""

from __future__ import annotations

import torch

from ...errors import SparsebenchError
from ..base import PruningMethod, dense_layers, reached, register_method, top_scores
from ..training import dense_weight, masked, train


def cubic_sparsity(step: int, total: int, final: float, warmup: float, cooldown: float) -> float:
    """The cubic schedule of Zhu and Gupta 2017 that movement pruning uses."""
    start, stop = warmup * total, (1 - cooldown) * total
    if step < start:
        return 0.0
    if step >= stop or stop <= start:
        return final
    return final * (1 - (1 - (step - start) / (stop - start)) ** 3)


@register_method
class Movement(PruningMethod):
    name = "movement"
    description = "during fine-tuning: keep the weights moving away from zero (-sum g*w)"
    paper = "Sanh et al. 2020, Movement Pruning: Adaptive Sparsity by Fine-Tuning"
    needs_data = True
    defaults = {"warmup": 0.1, "cooldown": 0.2, "update_every": 1}
    trains = True

    def prune(self, model, config, data=None):
        warmup, cooldown = self.option(config, "warmup"), self.option(config, "cooldown")
        every = self.option(config, "update_every")
        if not (0 <= warmup and 0 <= cooldown and warmup + cooldown < 1) or every < 1:
            raise SparsebenchError(
                "movement needs warmup >= 0, cooldown >= 0, warmup + cooldown < 1 and "
                "update_every >= 1"
            )
        if data.epochs < 1:
            raise SparsebenchError("movement prunes while it trains: pass --epochs 1 or more")
        layers = dense_layers(model)
        total = data.epochs * data.steps_per_epoch
        scores = {name: torch.zeros_like(m.weight) for name, m in layers}
        with masked(layers) as attached:

            def accumulate(step: int) -> None:
                for (name, module), mask in zip(layers, attached.values(), strict=True):
                    if mask.grad is None:  # a layer the forward pass did not use
                        continue
                    scores[name].sub_(mask.grad * dense_weight(module).detach())

            def update(step: int) -> None:
                if (step + 1) % every and step + 1 != total:
                    return
                sparsity = cubic_sparsity(step + 1, total, config.sparsity, warmup, cooldown)
                for name, keep in top_scores(scores, sparsity, config.scope).items():
                    attached[name].mask.copy_(keep)

            stats = train(model, data, data.epochs, config.seed, "movement",
                          after_backward=accumulate, after_step=update)  # fmt: skip
        result = reached(self, layers, config)
        result.extra["train"] = stats
        return result
