"""`sensitivity`: per-layer sparsities from a sensitivity scan (the assignment's Task 1a).

Han, Pool, Tran and Dally, "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015 (Section 4, sensitivity analysis); the course assignment of seed 001.
Each layer alone is magnitude-pruned at every ratio of `ratios` and the drop of held-out top-1
(the data's test split; the accuracy reported after pruning is on the same split, as in the
assignment) is measured, the other layers dense. With the drop curves linearly interpolated,
every layer takes the largest ratio whose drop stays within a common budget t, and t is
bisected until the layers together reach the requested sparsity (`choose_ratios`); the
largest layers absorb the rounding so the total is exact. The sensitivity table goes in the
result.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import SparsebenchError
from ..base import PruningMethod, apply_masks_, dense_layers, finetune, register_method, top_counts
from ..training import progress_bar

GRID = np.linspace(0.0, 0.99, 991)  # candidate per-layer ratios, 0.001 apart


def parse_ratios(text: str) -> list[float]:
    try:
        ratios = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise SparsebenchError(
            f"option 'ratios' must be numbers separated by commas: {text!r}"
        ) from None
    if not ratios or not all(0 < r < 1 for r in ratios):
        raise SparsebenchError(f"option 'ratios' must be ratios in (0, 1): {text!r}")
    return ratios


def choose_ratios(drops: dict[str, list[float]], ratios: list[float], sizes: dict[str, int],
                  target: float) -> dict[str, int]:  # fmt: skip
    """Keep counts per layer reaching `target` sparsity with the smallest common drop budget.

    Each layer takes the largest ratio (up to the largest scanned) whose interpolated drop is
    within the budget; the budget is bisected. Where several layers cross the budget at once
    (flat curves), the ratios between the two sides of the crossing are blended so the total
    lands on the target instead of jumping past it. Every layer keeps at least one weight.
    """
    top = max(ratios)
    grid = GRID[GRID <= top + 1e-9]
    curves = {name: np.interp(grid, [0.0, *ratios], [0.0, *d]) for name, d in drops.items()}
    total = sum(sizes.values())

    def pick(budget: float) -> dict[str, float]:
        chosen = {}
        for name, curve in curves.items():
            ok = np.nonzero(curve <= budget)[0]
            chosen[name] = float(grid[ok[-1]]) if len(ok) else 0.0
        return chosen

    def reached(chosen) -> float:
        return sum(chosen[n] * sizes[n] for n in sizes) / total

    if reached(pick(math.inf)) < target - 1e-9:
        raise SparsebenchError(
            f"the scanned ratios (up to {top:g} per layer) cannot reach {target:.1%} sparsity: "
            "scan larger ones, e.g. -O ratios=0.5,0.9,0.99"
        )
    low = min(float(c.min()) for c in curves.values()) - 1.0
    high = max(float(c.max()) for c in curves.values()) + 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if reached(pick(middle)) < target else (low, middle)
    below, above = pick(low), pick(high)
    a, b = reached(below), reached(above)
    blend = (target - a) / (b - a) if b > a else 1.0
    blend = min(max(blend, 0.0), 1.0)
    chosen = {n: below[n] + blend * (above[n] - below[n]) for n in sizes}
    keep = {n: min(max(round((1 - chosen[n]) * sizes[n]), 1), sizes[n]) for n in sizes}
    excess = sum(keep.values()) - round((1 - target) * total)
    for name in sorted(sizes, key=sizes.get, reverse=True):  # the largest layers absorb rounding
        change = min(max(excess, keep[name] - sizes[name]), keep[name] - 1)
        keep[name] -= change
        excess -= change
    return keep


@register_method
class Sensitivity(PruningMethod):
    name = "sensitivity"
    description = "per-layer ratios from a scan of each layer's held-out accuracy drop"
    paper = "Han et al. 2015, Section 4 (sensitivity analysis); the seed 001 assignment, Task 1a"
    needs_data = True
    defaults = {"ratios": "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.99"}

    def prune(self, model, config, data=None):
        if data.test is None:
            raise SparsebenchError(
                "sensitivity scores held-out accuracy: the data has no test split"
            )
        ratios = parse_ratios(self.option(config, "ratios"))
        layers = dense_layers(model)
        base = data.accuracy(model)
        drops, table = {}, {}
        with progress_bar("sensitivity scan", len(layers) * len(ratios), loss=False) as advance:
            for name, module in layers:
                table[name] = self._scan(model, module, ratios, data, advance)
                drops[name] = [base - a for a in table[name]]
        sizes = {name: m.weight.numel() for name, m in layers}
        keep = choose_ratios(drops, ratios, sizes, config.sparsity)
        apply_masks_(layers, top_counts({n: m.weight.detach().abs() for n, m in layers}, keep))
        result = finetune(self, model, layers, config, data)
        result.extra["sensitivity"] = {
            "baseline_top1": base,
            "ratios": ratios,
            "top1": table,
            "chosen": {n: 1 - keep[n] / sizes[n] for n in sizes},
        }
        result.tables.append(
            sensitivity_table(base, ratios, table, result.extra["sensitivity"]["chosen"])
        )
        return result

    @staticmethod
    def _scan(model, module, ratios, data, advance) -> list[float]:
        """Held-out top-1 with `module` alone magnitude-pruned at each ratio."""
        original = module.weight.detach().clone()
        accuracies = []
        try:
            for ratio in ratios:
                keep = round((1 - ratio) * original.numel())
                mask = top_counts({"w": original.abs()}, {"w": keep})["w"]
                with torch.no_grad():
                    module.weight.copy_(original * mask)
                accuracies.append(data.accuracy(model))
                advance()
        finally:
            with torch.no_grad():
                module.weight.copy_(original)
        return accuracies


def sensitivity_table(base: float, ratios, table: dict, chosen: dict) -> str:
    """Held-out top-1 (%) of each layer pruned alone at each ratio, and the chosen ratio."""
    head = ["layer", *(f"{r:g}" for r in ratios), "chosen"]
    rows = [[name, *(f"{a:.1f}" for a in accs), f"{chosen[name]:.3f}"]
            for name, accs in table.items()]  # fmt: skip
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = [f"sensitivity scan: held-out top-1 (%) with one layer pruned (dense {base:.2f}%)"]
    for row in [head, *rows]:
        lines.append("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)
