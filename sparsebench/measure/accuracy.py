"""Top-1 / top-5 accuracy of a model on a labelled dataset."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import Dataset
from ..errors import SparsebenchError


@dataclass
class AccuracyResult:
    """Accuracy in percent; top5 is None (with a reason) when the model has fewer than 5 classes."""

    dataset: str
    samples: int
    top1: float
    top5: float | None
    top5_reason: str | None = None


def fit_samples(x: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Reshape samples to the model's per-sample input shape when the element counts match.

    `x` is a tensor or `LazySamples` (reshaped lazily, without reading a sample).
    """
    per_sample = tuple(input_shape[1:])
    if tuple(x.shape[1:]) == per_sample:
        return x
    if torch.Size(x.shape[1:]).numel() != torch.Size(per_sample).numel():
        raise SparsebenchError(
            f"dataset samples of shape {list(x.shape[1:])} do not fit the model input "
            f"{list(per_sample)} (per sample)"
        )
    return x.reshape(x.shape[0], *per_sample)


def measure_accuracy(
    model: nn.Module,
    data: Dataset,
    input_shape: tuple[int, ...],
    device: str = "cpu",
    batch_size: int = 256,
) -> AccuracyResult:
    """Evaluate `model` on every sample of `data`, a batch at a time (`data.batches`, so lazily
    read datasets stay out of memory); returns top-1 and top-5 in percent."""
    if len(data) == 0:
        raise SparsebenchError(f"dataset '{data.name}' is empty")
    correct1 = correct5 = 0
    with torch.inference_mode():
        for x, y in data.batches(batch_size):
            logits = model(fit_samples(x, input_shape).to(device))
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise SparsebenchError(
                    "accuracy needs a model that returns (batch, classes) logits"
                )
            labels = y.to(logits.device)
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            correct1 += int((top[:, 0] == labels).sum())
            correct5 += int((top == labels[:, None]).any(dim=1).sum())
            classes = logits.shape[1]
    n = len(data)
    if data.y.max() >= classes:
        raise SparsebenchError(
            f"dataset '{data.name}' has label {int(data.y.max())} "
            f"but the model has only {classes} outputs"
        )
    top5 = 100.0 * correct5 / n if classes >= 5 else None
    reason = None if top5 is not None else f"model has {classes} classes (< 5)"
    return AccuracyResult(data.name, n, 100.0 * correct1 / n, top5, reason)
