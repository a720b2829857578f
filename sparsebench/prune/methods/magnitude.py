"""`magnitude`: keep the largest |w|.

Han, Pool, Tran and Dally, "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015 (the baseline of the seeds' experiments)."""

from __future__ import annotations

from ..base import PruningMethod, dense_layers, finetune, register_method
from ..magnitude import magnitude_prune_


@register_method
class Magnitude(PruningMethod):
    name = "magnitude"
    description = "keep the largest |w| (global or per layer)"
    paper = "Han et al. 2015, Learning both Weights and Connections for Efficient Neural Networks"

    def scores(self, model, layers, config, data=None):
        return {name: module.weight.detach().abs() for name, module in layers}

    def prune(self, model, config, data=None):
        """Through torch.nn.utils.prune (`magnitude_prune_`), which also names the layers a
        global ranking emptied; then fine-tuned given data."""
        layers = dense_layers(model)
        magnitude_prune_(model, config.sparsity, scope=config.scope)
        return finetune(self, model, layers, config, data)
