"""`snip`: prune at initialisation by connection sensitivity |g * w|.

Lee, Ajanthan and Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity",
ICLR 2019. The score of a weight is |dL/dw * w| on a few training batches, the first-order
change of the loss when the connection is removed; the paper ranks all weights together
(`--scope global`) once, before training, and then trains the sparse network (`--epochs`).
"""

from __future__ import annotations

from ..base import PruningMethod, loss_gradients, register_method


@register_method
class SNIP(PruningMethod):
    name = "snip"
    description = "at init: keep the largest |dL/dw * w| over a few batches"
    paper = "Lee et al. 2019, SNIP: Single-shot Network Pruning based on Connection Sensitivity"
    needs_data = True
    defaults = {"samples": 512}

    def check(self, config):
        self.at_least(config, "samples", 1)

    def scores(self, model, layers, config, data=None):
        x, y = data.sample(self.option(config, "samples"), config.seed)
        grads = loss_gradients(model, layers, x, y)
        return {name: (grads[name] * module.weight.detach()).abs() for name, module in layers}
