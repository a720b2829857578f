"""`grasp`: prune at initialisation, keeping the gradient flow (Hessian-gradient product).

Wang, Zhang and Grosse, "Picking Winning Tickets Before Training by Preserving Gradient Flow",
ICLR 2020. With g the loss gradient and H the Hessian, removing weights changes the gradient
norm by about -w * (H g); the score is S = -w * (H g) and the weights with the *highest* S
are removed (their removal reduces gradient flow least, or increases it). H g comes from one
extra backward pass through g . stop_gradient(g). Logits are divided by a temperature (200 in
the paper) so the softmax does not saturate at initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..base import PruningMethod, register_method


@register_method
class GraSP(PruningMethod):
    name = "grasp"
    description = "at init: remove the weights whose removal least reduces gradient flow"
    paper = "Wang et al. 2020, Picking Winning Tickets Before Training by Preserving Gradient Flow"
    needs_data = True
    defaults = {"samples": 512, "temperature": 200.0}

    def scores(self, model, layers, config, data=None):
        x, y = data.sample(self.option(config, "samples"), config.seed)
        temperature = self.option(config, "temperature")
        weights = [module.weight for _, module in layers]
        with torch.enable_grad():
            loss = F.cross_entropy(model(x) / temperature, y)
            g = torch.autograd.grad(loss, weights)
            loss = F.cross_entropy(model(x) / temperature, y)
            g_graph = torch.autograd.grad(loss, weights, create_graph=True)
            z = sum((a.detach() * b).sum() for a, b in zip(g, g_graph, strict=True))
            hg = torch.autograd.grad(z, weights)
        # keep the lowest S = -w * Hg: the highest w * Hg
        return {name: (module.weight.detach() * h) for (name, module), h
                in zip(layers, hg, strict=True)}  # fmt: skip
