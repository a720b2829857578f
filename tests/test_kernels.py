"""Kernel evidence: a converted layer that ran no sparse kernel is reported as a fallback."""

from __future__ import annotations

import torch
from torch import nn

from sparsebench.formats import get_exporter
from sparsebench.formats.csr import csr_layer
from sparsebench.measure.kernels import kernel_evidence


def test_a_layer_that_fell_back_to_dense_is_named():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    model[0] = csr_layer(model[0])  # layer "2" claims to be converted but stays dense
    fragments = get_exporter("csr").kernel_evidence
    evidence = kernel_evidence(model, torch.randn(2, 16), ["0", "2"], fragments)
    assert evidence["converted_layers"] == 2 and evidence["sparse_layers"] == 1
    assert evidence["fell_back_to_dense"] == ["2"]
    assert evidence["sparse_kernel_ran"] is False
    assert sum(evidence["sparse_ops"].values()) == 1
