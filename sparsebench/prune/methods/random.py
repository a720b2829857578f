"""`random`: keep weights chosen uniformly at random (seeded), the control every pruning
paper reports (e.g. Frankle and Carbin, "The Lottery Ticket Hypothesis", ICLR 2019, and
Liu et al., "Rethinking the Value of Network Pruning", ICLR 2019)."""

from __future__ import annotations

import torch

from ..base import PruningMethod, register_method


@register_method
class Random(PruningMethod):
    name = "random"
    description = "keep weights chosen uniformly at random (seeded control)"
    paper = "the random baseline of Frankle and Carbin 2019 and Liu et al. 2019"

    def scores(self, model, layers, config, data=None):
        generator = torch.Generator().manual_seed(config.seed)
        return {name: torch.rand(module.weight.shape, generator=generator)
                for name, module in layers}  # fmt: skip
