"""Training under masks: the loop every schedule that trains shares (fine-tuning, IMP rounds,
gradient tracking, movement, RigL, gates).

Masks are attached as `torch.nn.utils.parametrize` parametrizations: the layer computes with
`weight * mask` while the dense weight stays the parameter, so a mask can change during
training (movement, RigL) and pruned weights take no gradient step. Each parametrization also
keeps the last gradient of the *masked* weight, dense over pruned positions too, which is what
RigL grows by and movement scores. `bake_` makes the masks permanent zeros.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .. import progress
from .data import PruneData


class Mask(nn.Module):
    """`weight * mask`; `grad` is the gradient of that product after each backward."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))
        self.grad: torch.Tensor | None = None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        out = weight * self.mask.to(weight.dtype)
        if out.requires_grad:
            out.register_hook(self._keep)
        return out

    def _keep(self, grad: torch.Tensor) -> None:
        self.grad = grad.detach()


def attach(layers, masks: dict[str, torch.Tensor] | None = None) -> dict[str, Mask]:
    """Parametrize each layer's weight with a `Mask` (all ones where `masks` has none)."""
    attached = {}
    for name, module in layers:
        mask = masks[name] if masks is not None else torch.ones_like(module.weight, dtype=bool)
        attached[name] = Mask(mask)
        parametrize.register_parametrization(module, "weight", attached[name])
    return attached


def bake_(layers) -> None:
    """Remove the parametrizations, leaving `weight * mask` as the plain weight."""
    for _, module in layers:
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The dense (unmasked) weight parameter of a layer, parametrized or not."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@contextmanager
def masked(layers, masks: dict[str, torch.Tensor] | None = None):
    """Train under `masks` inside the block; the masks are baked in when it ends."""
    attached = attach(layers, masks)
    try:
        yield attached
    finally:
        bake_(layers)


Hook = Callable[[int], None]  # called with the global step after each backward, before the step


def train(model: nn.Module, data: PruneData, epochs: int, seed: int, label: str,
          after_backward: Hook | None = None, after_step: Hook | None = None,
          extra_loss: Callable[[], torch.Tensor] | None = None,
          params: list[torch.Tensor] | None = None) -> dict:  # fmt: skip
    """Adam on cross-entropy (plus `extra_loss()`) for `epochs` epochs; returns the last epoch's
    mean loss and the seconds taken. Batches are shuffled under `seed` + epoch."""
    with torch.random.fork_rng(
        devices=[]
    ):  # dropout follows `seed`, the caller's RNG is left alone
        torch.manual_seed(seed)
        return _train(model, data, epochs, seed, label, after_backward, after_step, extra_loss,
                      params)  # fmt: skip


def _train(model, data, epochs, seed, label, after_backward, after_step, extra_loss, params):
    optimizer = torch.optim.Adam(params if params is not None else model.parameters(), lr=data.lr)
    model.train()
    step, loss_sum, count, started = 0, 0.0, 0, time.perf_counter()
    with progress_bar(label, epochs * data.steps_per_epoch) as advance:
        for epoch in range(epochs):
            loss_sum, count = 0.0, 0
            for x, y in data.batches(seed + epoch):
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                total = loss + extra_loss() if extra_loss is not None else loss
                total.backward()
                if after_backward is not None:
                    after_backward(step)
                optimizer.step()
                if after_step is not None:
                    after_step(step)
                step += 1
                loss_sum, count = loss_sum + float(loss.detach()) * len(y), count + len(y)
                advance(float(loss.detach()))
    model.eval()
    return {"loss": loss_sum / max(count, 1), "seconds": time.perf_counter() - started,
            "steps": step}  # fmt: skip


@contextmanager
def progress_bar(label: str, total: int, loss: bool = True):
    """A rich progress bar on stderr over `total` steps (silent with --quiet or no steps);
    yields `advance(loss=nan)`. With `loss` the bar shows the last loss."""
    if progress.is_quiet() or total <= 0:
        yield lambda loss=float("nan"): None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if loss:
        columns.append(TextColumn("loss {task.fields[loss]:.4f}"))
    columns.append(TimeElapsedColumn())
    console = Console(stderr=True, highlight=False)
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total, loss=float("nan"))
        yield lambda loss=float("nan"): bar.update(task, advance=1, loss=loss)
