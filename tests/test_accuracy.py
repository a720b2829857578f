"""Top-1 / top-5 accuracy against labels whose ranks are known by construction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsebench import SparsebenchError
from sparsebench.data import Dataset
from sparsebench.measure.accuracy import fit_samples, measure_accuracy


class FixedLogits(nn.Module):
    """Returns the sample itself as logits: class scores are chosen by the test."""

    def forward(self, x):
        return x


def _data(labels, classes=6):
    # logits ranked 5 > 4 > 3 > 2 > 1 > 0, i.e. class 5 is top-1 and class 1 is 5th
    x = torch.arange(float(classes)).repeat(len(labels), 1)
    return Dataset("fixed", x, torch.tensor(labels), [str(i) for i in range(classes)])


def test_top1_and_top5_by_rank():
    # label 5: top-1; label 2: rank 4 (top-5 only); label 0: rank 6 (neither)
    result = measure_accuracy(FixedLogits(), _data([5, 2, 0, 5]), (1, 6), batch_size=3)
    assert result.top1 == pytest.approx(50.0)
    assert result.top5 == pytest.approx(75.0)
    assert result.samples == 4


def test_top5_is_unavailable_below_five_classes():
    result = measure_accuracy(FixedLogits(), _data([3, 0], classes=4), (1, 4))
    assert result.top1 == 50.0
    assert result.top5 is None and "4 classes" in result.top5_reason


def test_labels_beyond_the_model_outputs_are_an_error():
    with pytest.raises(SparsebenchError, match="label 9"):
        measure_accuracy(FixedLogits(), _data([9]), (1, 6))


def test_samples_are_reshaped_to_the_model_input():
    assert fit_samples(torch.zeros(5, 1, 8, 8), (1, 64)).shape == (5, 64)
    with pytest.raises(SparsebenchError, match="do not fit"):
        fit_samples(torch.zeros(5, 40), (1, 64))
