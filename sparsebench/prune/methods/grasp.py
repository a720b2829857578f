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

CHUNK = 128  # samples per backward pass


def _grads(loss, weights, create_graph: bool = False) -> list[torch.Tensor]:
    """d loss / d w for each weight; zeros for layers the loss does not reach."""
    found = torch.autograd.grad(loss, weights, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(found, weights, strict=True)]


@register_method
class GraSP(PruningMethod):
    name = "grasp"
    description = "at init: remove the weights whose removal least reduces gradient flow"
    paper = "Wang et al. 2020, Picking Winning Tickets Before Training by Preserving Gradient Flow"
    needs_data = True
    defaults = {"samples": 512, "temperature": 200.0}

    def check(self, config):
        self.at_least(config, "samples", 1)
        self.at_least(config, "temperature", 0, above=True)

    def scores(self, model, layers, config, data=None):
        x, y = data.sample(self.option(config, "samples"), config.seed)
        temperature = self.option(config, "temperature")
        weights = [module.weight for _, module in layers]
        chunks = list(zip(x.split(CHUNK), y.split(CHUNK), strict=True))
        with torch.enable_grad():
            g = [torch.zeros_like(w) for w in weights]
            for xb, yb in chunks:  # g: the gradient of the mean loss over every sample
                loss = F.cross_entropy(model(xb) / temperature, yb, reduction="sum") / len(x)
                for total, part in zip(g, _grads(loss, weights), strict=True):
                    total += part
            hg = [torch.zeros_like(w) for w in weights]
            for xb, yb in chunks:  # Hg = d(g . stop_grad(g))/dw, summed chunk by chunk
                loss = F.cross_entropy(model(xb) / temperature, yb, reduction="sum") / len(x)
                g_graph = _grads(loss, weights, create_graph=True)
                z = sum((a * b).sum() for a, b in zip(g, g_graph, strict=True) if b.requires_grad)
                if isinstance(z, torch.Tensor):
                    for total, part in zip(hg, _grads(z, weights), strict=True):
                        total += part
        # keep the lowest S = -w * Hg: the highest w * Hg
        return {name: (module.weight.detach() * h) for (name, module), h
                in zip(layers, hg, strict=True)}  # fmt: skip
