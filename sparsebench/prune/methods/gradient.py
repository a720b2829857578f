"""`gradient`: prune the weights whose gradients stay small (seed 000's hypothesis).

The moving average of |dL/dw| is tracked while the model trains for `warmup` epochs (10 in the
seed experiment, momentum 0.9 per step); then the weights with the lowest average are pruned
and the model fine-tunes for `--epochs`. The seed found magnitude pruning better at every
sparsity; `sparsebench reproduce gradient-vs-magnitude` checks that. Related published
criteria: Molchanov et al., "Pruning Convolutional Neural Networks for Resource Efficient
Inference", ICLR 2017 (first-order Taylor), and the gradient-based scores of Mozer and
Smolensky 1989 ("Skeletonization").
"""

from __future__ import annotations

import torch

from ...errors import SparsebenchError
from ..base import PruningMethod, apply_masks_, dense_layers, finetune, register_method
from ..training import masked, train


@register_method
class GradientMagnitude(PruningMethod):
    name = "gradient"
    description = "train `warmup` epochs tracking a moving average of |grad|; keep the largest"
    paper = "seed 000 (gradient- vs magnitude-based pruning on mnist1d); Molchanov et al. 2017"
    needs_data = True
    defaults = {"warmup": 10, "momentum": 0.9}

    def check(self, config):
        self.at_least(config, "warmup", 1)
        momentum = self.at_least(config, "momentum", 0)
        if momentum >= 1:
            raise SparsebenchError(
                f"option 'momentum' of method 'gradient' must be < 1, got {momentum}"
            )

    def prune(self, model, config, data=None):
        layers = dense_layers(model)
        momentum = self.option(config, "momentum")
        average = {name: torch.zeros_like(m.weight) for name, m in layers}
        with masked(layers) as masks:

            def track(step: int) -> None:
                for name, mask in masks.items():
                    if mask.grad is None:  # a layer the forward pass did not use
                        continue
                    rate = 0.0 if step == 0 else momentum  # the first step seeds the average
                    average[name].mul_(rate).add_(mask.grad.abs(), alpha=1 - rate)

            train(model, data, self.option(config, "warmup"), config.seed, "warm-up",
                  after_backward=track)  # fmt: skip
        apply_masks_(layers, self.masks(average, config))
        result = finetune(self, model, layers, config, data)
        return result
