"""`gumbel`: learned gates on every weight, sampled with a hard Gumbel-softmax, pushed toward a
target density by a loss term (seed 003).

Zhang, Tao and Zhang, "Neural Network Pruning by Gradient Descent", arXiv:2311.12526 (2023), built
on Jang, Gu and Poole, "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017. Each
weight w has a gate logit l; in training the layer uses w * g with g a hard {0, 1} sample of
the two-class Gumbel-softmax at temperature `temperature`, sigmoid((l + logistic noise) / tau)
rounded, with the straight-through gradient of the soft sample. The loss adds
`penalty * (log d - log d*)^2`, d the expected density (mean sigmoid(l) over all gated weights)
and d* = 1 - sparsity, so the layers share the budget as the gradients decide. Gates train
with their own Adam learning rate `gate_lr`. With `anneal` a > 0 the target moves
log-linearly from density 1 to d* over the first a of the training steps (a gradual schedule
in the manner of Zhu and Gupta 2017, so the gates close while the weights adapt). At the end
the gates with the largest logits are kept, exactly (1 - sparsity) of the weights (per layer
with `--scope layer`, over all with `--scope global`, the default of the paper's setting), and
the weights keep their values.
The seed reached 0.15 % of LeNet's weights (about 404) on MNIST.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...errors import SparsebenchError
from ..base import PruningMethod, apply_masks_, dense_layers, reached, register_method, top_scores
from ..training import train


class Gate(nn.Module):
    """`weight * g`, g a hard Gumbel-softmax sample of the gate logits (deterministic
    `logits > 0` in eval mode)."""

    def __init__(self, shape, init: float, temperature: float, generator: torch.Generator):
        super().__init__()
        self.logits = nn.Parameter(torch.full(shape, init))
        self.temperature = temperature
        self.generator = generator

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return weight * (self.logits > 0).to(weight.dtype)
        u = torch.rand(self.logits.shape, generator=self.generator).clamp(1e-6, 1 - 1e-6)
        soft = torch.sigmoid((self.logits + torch.log(u) - torch.log1p(-u)) / self.temperature)
        hard = (soft > 0.5).to(soft.dtype)
        return weight * (hard + soft - soft.detach())


@register_method
class GumbelGates(PruningMethod):
    name = "gumbel"
    description = "learned per-weight gates (hard Gumbel-softmax) with a density loss"
    paper = (
        "Zhang, Tao and Zhang 2023, Neural Network Pruning by Gradient Descent (arXiv:2311.12526)"
    )
    trains = True
    needs_data = True
    defaults = {"temperature": 0.5, "penalty": 1.0, "gate_lr": 0.05, "init": 3.0, "anneal": 0.0}

    def prune(self, model, config, data=None):
        keys = ("temperature", "penalty", "gate_lr", "init", "anneal")
        tau, penalty, gate_lr, init, anneal = (self.option(config, k) for k in keys)
        if tau <= 0 or penalty < 0 or gate_lr <= 0 or not 0 <= anneal <= 1:
            raise SparsebenchError(
                "gumbel needs temperature > 0, penalty >= 0, gate_lr > 0 and anneal in [0, 1]"
            )
        if data.epochs < 1:
            raise SparsebenchError("gumbel learns its gates by training: pass --epochs 1 or more")
        layers = dense_layers(model)
        generator = torch.Generator().manual_seed(config.seed)
        gates = {name: Gate(m.weight.shape, init, tau, generator) for name, m in layers}
        weights = [p for p in model.parameters()]
        for name, module in layers:
            parametrize.register_parametrization(module, "weight", gates[name])
        final = math.log(1 - config.sparsity)
        total = sum(g.logits.numel() for g in gates.values())
        ramp = anneal * data.epochs * data.steps_per_epoch
        step = [0]

        def density_loss() -> torch.Tensor:
            # the log-density target moves linearly from log 1 to log d* over `anneal` of the
            # steps, so gates close gradually instead of all at once
            target = final * min(1.0, step[0] / ramp) if ramp > 0 else final
            step[0] += 1
            density = sum(torch.sigmoid(g.logits).sum() for g in gates.values()) / total
            return penalty * (torch.log(density) - target) ** 2

        params = [
            {"params": weights},
            {"params": [g.logits for g in gates.values()], "lr": gate_lr},
        ]
        try:
            stats = train(model, data, data.epochs, config.seed, "gates",
                          extra_loss=density_loss, params=params)  # fmt: skip
            logits = {name: g.logits.detach().clone() for name, g in gates.items()}
            learned = sum(int((g.logits > 0).sum()) for g in gates.values()) / total
        finally:
            for _, module in layers:
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        apply_masks_(layers, top_scores(logits, config.sparsity, config.scope))
        result = reached(self, layers, config)
        result.extra.update({"train": stats, "learned_density": learned})
        return result
