"""What the methods that look at data get: the train and held-out splits, the model's input
shape and the training settings of the method's schedule (`PruneData`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..data import Dataset, load_dataset
from ..measure.accuracy import fit_samples, measure_accuracy
from ..options import check_count, check_number


@dataclass
class PruneData:
    """Training data for a method's schedule.

    `epochs` is what the schedule trains: fine-tuning after a one-shot prune, each round of
    IMP, the whole run of movement, RigL and gates. `test` (held out) scores sensitivity scans
    and the accuracy recorded before and after pruning.
    """

    train: Dataset
    test: Dataset | None
    input_shape: tuple[int, ...]
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3

    def __post_init__(self):
        check_count("--epochs", self.epochs, 0)
        check_count("--train-batch-size", self.batch_size, 1)
        check_number("--lr", self.lr, above=0)
        self.input_shape = tuple(self.input_shape)
        self._x = fit_samples(self.train.x, self.input_shape)

    @property
    def steps_per_epoch(self) -> int:
        steps = -(-len(self.train) // self.batch_size)
        return steps - 1 if steps > 1 and len(self.train) % self.batch_size == 1 else steps

    def batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled (inputs, labels) batches; the order follows `seed`."""
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))
        starts = list(range(0, len(order), self.batch_size))
        if len(starts) > 1 and len(order) - starts[-1] == 1:
            starts.pop()  # a last batch of one joins the one before (BatchNorm needs two)
        for start, stop in zip(starts, [*starts[1:], len(order)], strict=True):
            idx = order[start:stop]
            yield self._x[idx], self.train.y[idx]

    def sample(self, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`count` training samples drawn under `seed` (the few batches of SNIP and GraSP)."""
        generator = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.train), generator=generator)[:count]
        return self._x[idx], self.train.y[idx]

    def accuracy(self, model: nn.Module) -> float | None:
        """Held-out top-1 (percent), or None without a held-out split."""
        if self.test is None:
            return None
        was_training = model.training
        model.eval()
        try:
            return measure_accuracy(model, self.test, self.input_shape).top1
        finally:
            model.train(was_training)


def load_prune_data(spec: str, input_shape, epochs: int = 1, batch_size: int = 128,
                    lr: float = 1e-3) -> PruneData:  # fmt: skip
    """`spec`'s train split to train on and its test split held out (see `load_dataset`)."""
    return PruneData(load_dataset(spec, "train"), load_dataset(spec, "test"), tuple(input_shape),
                     epochs, batch_size, lr)  # fmt: skip
