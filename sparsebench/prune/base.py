"""Pruning methods behind one small base class and a registry.

A method is a *score* (how important each weight is) plus a *schedule* (when the scores are
taken and the masks applied). The one-shot schedule, `prune_once`, is shared: score every
prunable layer, keep the highest scores to the requested sparsity (over all layers together
with scope "global", or layer by layer with "layer"), zero the rest, and, given data and
epochs, fine-tune under the fixed masks. Methods that train, rewind or regrow override
`prune` with their own schedule on top of the same masks (`training.py`).
Method options (`PruneConfig.options`, `-O KEY=VALUE` on the command line) are declared with
their defaults in `PruningMethod.defaults`; `option` reads them checked and typed.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import SparsebenchError
from ..measure.sparsity import prunable_layers
from ..registry import Registry

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class PruneConfig:
    """What every method takes: the target sparsity, the scope and a seed."""

    sparsity: float
    scope: str = "layer"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)):
            raise SparsebenchError(f"sparsity must be a number in [0, 1), got {self.sparsity!r}")
        if not 0.0 <= self.sparsity < 1.0:
            raise SparsebenchError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in SCOPES:
            raise SparsebenchError(f"unknown scope '{self.scope}': use {' or '.join(SCOPES)}")


@dataclass
class PruneResult:
    """What a method did: its name and options, and the sparsity reached per layer."""

    method: str
    options: dict
    layers: dict[str, float] = field(default_factory=dict)  # layer -> achieved sparsity
    sparsity: float = 0.0  # over all prunable weights
    extra: dict[str, Any] = field(default_factory=dict)  # what a schedule recorded (rounds...)
    tables: list[str] = field(default_factory=list)  # text tables to show (sensitivity scan)


class PruningMethod:
    """One method: `name`, a one-line `description`, the `paper` it follows, and `scores`."""

    name = ""
    description = ""
    paper = ""
    needs_data = False  # True: `prune` needs a PruneData (it trains or scores on data)
    fixed_sparsity: float | None = None  # set by patterns that decide it (N:M), else None
    granularity = "weights"  # or "channels": sparsity counts channels of each group
    needs_example = False  # True: `prune` takes `example=`, an input batch (graph tracing)
    trains = False  # True: the schedule is training (`--epochs` >= 1 needed)
    uses_scope = True  # False: the pattern decides per layer (N:M, channel groups)
    defaults: dict[str, Any] = {}  # the method's options and their defaults

    def option(self, config: PruneConfig, key: str):
        """Option `key` from `config.options` (or its default), converted to the default's type."""
        default = self.defaults[key]
        value = config.options.get(key, default)
        return convert_option(self.name, key, value, default)

    def check_options(self, config: PruneConfig) -> None:
        """Refuse options the method does not take (with close names) or cannot convert."""
        for key in config.options:
            if key not in self.defaults:
                close = difflib.get_close_matches(key, self.defaults, n=2)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                takes = ", ".join(self.defaults) or "none"
                raise SparsebenchError(
                    f"method '{self.name}' has no option '{key}'{hint} (it takes: {takes})"
                )
            self.option(config, key)
        self.check(config)

    def check(self, config: PruneConfig) -> None:
        """Refuse option values out of range, in one line (methods with options override)."""

    def at_least(self, config: PruneConfig, key: str, low: float, above: bool = False):
        """Option `key`, refused unless >= `low` (> `low` with `above`)."""
        value = self.option(config, key)
        if value < low or (above and value == low):
            bound = f"> {low}" if above else f">= {low}"
            raise SparsebenchError(f"option '{key}' of method '{self.name}' must be {bound}, "
                                   f"got {value}")  # fmt: skip
        return value

    def scores(self, model: nn.Module, layers: list[tuple[str, nn.Module]],
               config: PruneConfig, data=None) -> dict[str, torch.Tensor]:  # fmt: skip
        """Importance of every weight of every layer (same shapes as the weights); `data` is
        the PruneData of methods that score on data."""
        raise NotImplementedError

    def masks(
        self, scores: dict[str, torch.Tensor], config: PruneConfig
    ) -> dict[str, torch.Tensor]:
        """Keep-masks from scores: the top (1 - sparsity) by scope. Overridden by methods whose
        granularity is not single weights (N:M groups, channels)."""
        return top_scores(scores, config.sparsity, config.scope)

    def prune(self, model: nn.Module, config: PruneConfig, data=None) -> PruneResult:
        return prune_once(self, model, config, data)


METHODS: Registry[PruningMethod] = Registry("pruning method", "sparsebench prune-methods")


def register_method(cls: type[PruningMethod]) -> type[PruningMethod]:
    METHODS.register(cls.name, cls())
    return cls


def top_scores(scores: dict[str, torch.Tensor], sparsity: float,
               scope: str) -> dict[str, torch.Tensor]:  # fmt: skip
    """Masks keeping exactly round((1 - sparsity) * n) weights of the highest score, counted
    over all layers ("global") or in each layer ("layer"); ties are broken by torch.topk
    (deterministic for a given input, not by index)."""

    if scope == "layer":
        return top_counts(scores, {n: round((1 - sparsity) * s.numel()) for n, s in scores.items()})
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    mask = top_counts({"all": flat}, {"all": round((1 - sparsity) * flat.numel())})["all"]
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = mask[start : start + s.numel()].view(s.shape)
        start += s.numel()
    return masks


def top_counts(scores: dict[str, torch.Tensor], keep: dict[str, int]) -> dict[str, torch.Tensor]:
    """Masks keeping the `keep[name]` highest scores of each layer."""
    masks = {}
    for name, score in scores.items():
        mask = torch.zeros(score.numel(), dtype=torch.bool)
        if keep[name]:
            mask[torch.topk(score.flatten().float(), keep[name], sorted=False).indices] = True
        masks[name] = mask.view(score.shape)
    return masks


def loss_gradients(model: nn.Module, layers, x: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 128) -> dict[str, torch.Tensor]:  # fmt: skip
    """Gradients of the mean cross-entropy over (x, y) for each layer's weight."""
    import torch.nn.functional as F

    grads = {name: torch.zeros_like(module.weight) for name, module in layers}
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            loss = F.cross_entropy(model(xb), yb, reduction="sum") / len(x)
            weights = [m.weight for _, m in layers]
            found = torch.autograd.grad(loss, weights, allow_unused=True)  # unused layers: None
            for (name, _), grad in zip(layers, found, strict=True):
                if grad is not None:
                    grads[name] += grad
    return grads


def prune_once(method: PruningMethod, model: nn.Module, config: PruneConfig,
               data=None) -> PruneResult:  # fmt: skip
    """The one-shot schedule: score, mask, zero the pruned weights in place, then fine-tune
    `data.epochs` epochs under the masks when data is given."""
    layers = dense_layers(model)
    with torch.no_grad():
        scores = method.scores(model, layers, config, data)
        masks = method.masks(scores, config)
        apply_masks_(layers, masks)
    return finetune(method, model, layers, config, data)


def apply_masks_(layers, masks: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, module in layers:
            module.weight.mul_(masks[name].to(module.weight.dtype))


def finetune(method: PruningMethod, model: nn.Module, layers, config: PruneConfig,
             data=None) -> PruneResult:  # fmt: skip
    """`data.epochs` epochs of training under the current zero pattern (none without data), then
    the PruneResult; the fine-tuning's loss and time go in `extra["finetune"]`."""
    extra = {}
    if data is not None and data.epochs:
        from .training import masked, train

        masks = {name: module.weight.detach() != 0 for name, module in layers}
        with masked(layers, masks):
            extra["finetune"] = train(model, data, data.epochs, config.seed, "fine-tune")
    result = reached(method, layers, config)
    result.extra.update(extra)
    return result


def dense_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv/linear layers a method can prune (strided weights), or a one-line error."""
    layers = [(name, module) for name, module in prunable_layers(model)
              if module.weight.layout == torch.strided]  # fmt: skip
    if not layers:
        raise SparsebenchError("the model has no dense conv or linear layers to prune")
    return layers


def reached(method: PruningMethod, layers, config: PruneConfig) -> PruneResult:
    """The PruneResult of `layers` as they are now: the sparsity each one reached."""
    result = PruneResult(method.name, {"sparsity": config.sparsity, "scope": config.scope,
                                       "seed": config.seed})  # fmt: skip
    zeros = total = 0
    for name, module in layers:
        pruned = int(module.weight.numel() - torch.count_nonzero(module.weight))
        result.layers[name] = pruned / max(module.weight.numel(), 1)
        zeros, total = zeros + pruned, total + module.weight.numel()
    result.sparsity = zeros / max(total, 1)
    return result


def run_method(method: PruningMethod, model: nn.Module, config: PruneConfig, data=None,
               example=None) -> PruneResult:  # fmt: skip
    """Check the options and the data a method needs, then run it on `model` in place.
    `example` (an input batch) is for the methods that trace the model (`needs_example`); without
    it they take one from `data`."""
    method.check_options(config)
    if method.needs_data and data is None:
        raise SparsebenchError(
            f"method '{method.name}' trains or scores on data: pass --data (a dataset such as "
            "mnist1d, or NAME:PATH)"
        )
    if method.trains and data.epochs < 1:
        raise SparsebenchError(f"method '{method.name}' prunes while it trains: pass --epochs 1 "
                               "or more")  # fmt: skip
    model.eval()
    if method.needs_example:
        if example is None and data is not None:
            example = data.sample(1, config.seed)[0]
        if example is None:
            raise SparsebenchError(f"method '{method.name}' needs an example input or --data")
        result = method.prune(model, config, data, example=example)
    else:
        result = method.prune(model, config, data)
    result.options.update({key: method.option(config, key) for key in method.defaults})
    return result


def prune(model: nn.Module, method: str, sparsity: float, scope: str = "layer", seed: int = 0,
          data=None, example=None, **options) -> PruneResult:  # fmt: skip
    """Prune `model` in place with the registered `method` (see `sparsebench prune-methods`).

    `data` (a `PruneData`) feeds the methods that train or score on data, `example` (an input
    batch) the ones that trace the model; keyword `options` are the method's own
    (`sparsebench prune-methods` lists them).
    """
    config = PruneConfig(sparsity, scope, seed, options)
    return run_method(METHODS.get(method), model, config, data, example)


def convert_option(method: str, key: str, value, default):
    """`value` as the type of `default` (strings from the command line are parsed)."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        return str(value)
    except (TypeError, ValueError):
        raise SparsebenchError(
            f"option '{key}' of method '{method}' must be a {kind.__name__}, got {value!r}"
        ) from None
