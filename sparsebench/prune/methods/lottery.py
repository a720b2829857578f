"""`lottery`: iterative magnitude pruning (IMP) with weight rewinding, the lottery ticket.

Frankle and Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural
Networks", ICLR 2019; rewinding to an early iteration instead of the initialisation: Frankle,
Dziugaite, Roy and Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML
2020. Each round trains `--epochs` epochs under the current mask, removes `rate` of the
remaining weights by magnitude (per layer, or over all layers with `--scope global`), and
rewinds the survivors to the weights saved after `rewind_steps` training steps (0: the
initial weights). Rounds run until the requested sparsity; the last one is cut to reach it
exactly. The final ticket then trains `--epochs` epochs. `reinit=true` is the paper's control:
the final mask with freshly drawn weights instead of the rewound ones.
Remaining counts are rounded round by round (keep_r = round((1 - rate) * keep_{r-1})), so
LeNet-300-100's 266,200 weights go 212,960, 170,368, 136,294, 109,035, 87,228 at rate 0.2.
"""

from __future__ import annotations

import copy

import torch

from ...errors import SparsebenchError
from ..base import PruningMethod, dense_layers, reached, register_method, top_counts
from ..training import masked, train


def round_counts(total: int, rate: float, target: int) -> list[int]:
    """The weights kept after each round: (1 - rate) of the remaining, rounded, until `target`."""
    counts, keep = [], total
    while keep > target:
        keep = max(min(round((1 - rate) * keep), keep - 1), target)  # at least one goes
        counts.append(keep)
    return counts


@register_method
class LotteryTicket(PruningMethod):
    name = "lottery"
    description = "IMP: rounds of train, prune `rate` of the remaining by |w|, rewind"
    paper = (
        "Frankle and Carbin 2019, The Lottery Ticket Hypothesis; Frankle et al. 2020 (rewinding)"
    )
    needs_data = True
    defaults = {"rate": 0.2, "rewind_steps": 0, "reinit": False}
    trains = True

    def check(self, config):
        rate = self.option(config, "rate")
        if not 0 < rate < 1:
            raise SparsebenchError(f"option 'rate' of lottery must be in (0, 1), got {rate}")
        self.at_least(config, "rewind_steps", 0)

    def prune(self, model, config, data=None):
        rate = self.option(config, "rate")
        if not 0 < rate < 1:
            raise SparsebenchError(f"option 'rate' of lottery must be in (0, 1), got {rate}")
        if data.epochs < 1:
            raise SparsebenchError("lottery trains every round: pass --epochs 1 or more")
        layers = dense_layers(model)
        sizes = {name: m.weight.numel() for name, m in layers}
        schedule = self._schedule(sizes, rate, config)
        masks = {name: torch.ones_like(m.weight, dtype=torch.bool) for name, m in layers}
        fresh = (
            _reinit(copy.deepcopy(model), config.seed) if self.option(config, "reinit") else None
        )
        with masked(layers, masks) as attached:
            rewind_steps = self.option(config, "rewind_steps")
            if rewind_steps:
                stop = {"steps": rewind_steps}
                _train_steps(model, data, config.seed, stop)
            rewind = copy.deepcopy(model.state_dict())
            history = []
            for index, keep in enumerate(schedule, 1):
                stats = train(model, data, data.epochs, config.seed + index, f"round {index}")
                history.append(self._row(index - 1, attached, data, model, stats))
                scores = {n: torch.where(a.mask, _dense(m).abs(), -1.0) for (n, m), a
                          in zip(layers, attached.values(), strict=True)}  # fmt: skip
                new = top_counts(scores, keep) if isinstance(keep, dict) else None
                if new is None:
                    new = _global_top(scores, keep)
                model.load_state_dict(rewind)
                for name, mask in attached.items():
                    mask.mask.copy_(new[name])
            if fresh is not None:
                _load_dense(model, fresh)
            stats = train(model, data, data.epochs, config.seed + len(schedule) + 1, "ticket")
            history.append(self._row(len(schedule), attached, data, model, stats))
        result = reached(self, layers, config)
        result.extra["rounds"] = history
        return result

    def _schedule(self, sizes: dict[str, int], rate: float, config) -> list:
        """Per round: keep counts per layer (scope layer) or one total (scope global)."""
        if config.scope == "global":
            total = sum(sizes.values())
            return round_counts(total, rate, round((1 - config.sparsity) * total))
        per_layer = {n: round_counts(s, rate, round((1 - config.sparsity) * s))
                     for n, s in sizes.items()}  # fmt: skip
        rounds = max((len(c) for c in per_layer.values()), default=0)
        return [{n: (c[r] if r < len(c) else (c[-1] if c else sizes[n]))
                 for n, c in per_layer.items()} for r in range(rounds)]  # fmt: skip

    @staticmethod
    def _row(index, attached, data, model, stats) -> dict:
        nonzero = sum(int(a.mask.sum()) for a in attached.values())
        total = sum(a.mask.numel() for a in attached.values())
        row = {"round": index, "nonzero": nonzero, "percent": 100 * nonzero / total,
               "train_loss": stats["loss"], "seconds": stats["seconds"],
               "test_top1": data.accuracy(model)}  # fmt: skip
        row["test_loss"] = _test_loss(model, data)
        return row


def _dense(module):
    from ..training import dense_weight

    return dense_weight(module).detach()


def _global_top(scores: dict[str, torch.Tensor], keep: int) -> dict[str, torch.Tensor]:
    flat = torch.cat([s.flatten() for s in scores.values()])
    mask = top_counts({"all": flat}, {"all": keep})["all"]
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = mask[start : start + s.numel()].view(s.shape)
        start += s.numel()
    return masks


def _train_steps(model, data, seed: int, stop: dict) -> None:
    """Train the first `stop["steps"]` steps (the rewinding point)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=data.lr)
    model.train()
    step, epoch = 0, 0
    while step < stop["steps"]:
        for x, y in data.batches(seed - 1 - epoch):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            step += 1
            if step >= stop["steps"]:
                break
        epoch += 1
    model.eval()


def _reinit(model, seed: int):
    """`model` with fresh weights from each layer's own `reset_parameters`, under `seed` (the
    caller's RNG state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 10_000)
        for module in model.modules():
            if hasattr(module, "reset_parameters") and module is not model:
                module.reset_parameters()
    return model


def _load_dense(model, source) -> None:
    """Copy `source`'s parameters and buffers into `model`, whose layers may be parametrized
    (the masks stay; the dense weights are replaced)."""
    from torch.nn.utils import parametrize

    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, src in source.named_modules():
            target = modules[name]
            tensors = [*src.named_parameters(recurse=False), *src.named_buffers(recurse=False)]
            for key, value in tensors:
                if key == "weight" and parametrize.is_parametrized(target, "weight"):
                    target.parametrizations.weight.original.copy_(value)
                else:
                    getattr(target, key).copy_(value)


def _test_loss(model, data) -> float | None:
    if data.test is None:
        return None
    from ...measure.accuracy import fit_samples

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in data.test.batches(512):
            logits = model(fit_samples(x, data.input_shape))
            total += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            count += len(y)
    return total / max(count, 1)
