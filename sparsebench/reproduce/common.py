"""What the recipes share: data under a budget, seeds' mean and spread, markdown tables."""

from __future__ import annotations

import statistics

from ..data import Dataset, load_dataset
from ..prune import PruneData


def subset(data: Dataset, count: int | None) -> Dataset:
    """The first `count` samples (all with None)."""
    if count is None or count >= len(data):
        return data
    return Dataset(data.name, data.x[:count], data.y[:count], data.classes, list(data.notes))


def prune_data(spec: str, input_shape, epochs: int, batch_size: int = 64, lr: float = 1e-3,
               train: int | None = None, test: int | None = None) -> PruneData:  # fmt: skip
    """`spec`'s train split (first `train` samples) to train on, its test split held out."""
    return PruneData(subset(load_dataset(spec, "train"), train),
                     subset(load_dataset(spec, "test"), test), tuple(input_shape), epochs,
                     batch_size, lr)  # fmt: skip


def mean_std(values: list[float], digits: int = 2) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def mean(values: list[float]) -> float:
    return statistics.mean(values)


def spread(values: list[float]) -> float:
    """The sample std over seeds (0 for a single seed)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def beats(first: list[float], second: list[float]) -> int:
    """1 if `first`'s mean over seeds is higher than `second`'s by more than the larger of
    their std's, -1 if lower by more, 0 for a tie within the spread."""
    gap = mean(first) - mean(second)
    if abs(gap) <= max(spread(first), spread(second)):
        return 0
    return 1 if gap > 0 else -1


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
