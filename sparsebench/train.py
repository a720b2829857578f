"""Train a zoo model on an offline dataset with a plain loop, so users have a real baseline."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from .arch import build_model, zoo_input_shape
from .checkpoint import CheckpointMeta, save_checkpoint
from .data import Dataset, load_dataset
from .errors import SparsebenchError
from .io import check_writable
from .measure.accuracy import fit_samples, measure_accuracy
from .options import check_count, check_number, check_seconds


@dataclass(frozen=True)
class TrainConfig:
    """Plain Adam training: at most `epochs` epochs, stopping early after `max_seconds`."""

    epochs: int = 20
    max_seconds: float | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self):
        """Refuse bad options before any data loads (a bad batch size or lr used to crash)."""
        check_count("--epochs", self.epochs, 1)
        if self.max_seconds is not None:
            check_seconds("--seconds", self.max_seconds)
        check_count("--batch-size", self.batch_size, 1)
        check_number("--lr", self.lr, above=0)
        check_number("weight_decay", self.weight_decay, at_least=0)
        check_count("--seed", self.seed, 0)


def _epoch(model, x, y, optimizer, batch_size, generator) -> float:
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / len(x)


def _columns(config: TrainConfig) -> list:
    """Progress columns: the epoch count out of `epochs`, or under a time budget the epoch and
    the budget's elapsed/total seconds (the epoch cap is a bound it may never reach)."""
    if config.max_seconds:
        count = "epoch {task.fields[epoch]} · {task.fields[elapsed]:.0f}/{task.fields[budget]:g} s"
        columns = [TextColumn(count + " budget"), BarColumn()]
    else:
        columns = [TextColumn("epoch {task.completed}/{task.total}"), BarColumn()]
    return columns + [TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn()]


def _progress_state(config: TrainConfig, epochs: int, elapsed: float) -> dict:
    """`Progress.update` arguments after `epochs` epochs in `elapsed` seconds.

    Under a time budget the bar is the larger of the budget and the epoch cap used so far, so it
    fills whichever stops training first.
    """
    if not config.max_seconds:
        return {"completed": epochs}
    done = max(elapsed / config.max_seconds, epochs / config.epochs)
    return {"completed": min(done, 1.0), "epoch": epochs, "elapsed": elapsed}


def fit(
    model: nn.Module,
    train: Dataset,
    shape: tuple[int, ...],
    config: TrainConfig,
    console: Console | None = None,
) -> int:
    """Train `model` in place on `train`; returns the number of epochs run."""
    x, y = fit_samples(train.x, shape), train.y
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = time.perf_counter()
    budget = {"budget": config.max_seconds, "epoch": 0, "elapsed": 0.0}
    total = 1.0 if config.max_seconds else config.epochs
    epochs = 0
    with Progress(*_columns(config), transient=False, console=console) as progress:
        task = progress.add_task("train", total=total, loss=float("nan"), **budget)
        for _ in range(config.epochs):
            loss = _epoch(model, x, y, optimizer, config.batch_size, generator)
            epochs += 1
            elapsed = time.perf_counter() - start
            progress.update(task, loss=loss, **_progress_state(config, epochs, elapsed))
            if config.max_seconds and elapsed > config.max_seconds:
                break
    return epochs


def train(
    arch: str,
    data: str,
    output: str | Path,
    config: TrainConfig | None = None,
    arch_kwargs: dict | None = None,
    force: bool = False,
) -> dict:
    """Train zoo model `arch` on dataset `data`, save a sparsebench checkpoint, return a summary."""
    config = config or TrainConfig()
    check_writable(output, force)
    shape = zoo_input_shape(arch) if ":" not in arch else None
    if shape is None:
        raise SparsebenchError("train needs a zoo architecture (see `sparsebench models`)")
    train_set, test_set = load_dataset(data, "train"), load_dataset(data, "test")
    kwargs = {"num_classes": train_set.num_classes, **(arch_kwargs or {})}
    torch.manual_seed(config.seed)
    model = build_model(arch, kwargs)
    epochs = fit(model, train_set, shape, config)
    model.eval()
    accuracy = measure_accuracy(model, test_set, shape)
    meta = CheckpointMeta(
        arch=arch,
        arch_kwargs=kwargs,
        input_shape=list(shape),
        dataset=data,
        classes=train_set.classes,
        extra={"epochs": epochs, "test_top1": accuracy.top1, "train_config": vars(config)},
    )
    save_checkpoint(output, model, meta, force=force)
    return {"epochs": epochs, "top1": accuracy.top1, "top5": accuracy.top5, "output": str(output)}
