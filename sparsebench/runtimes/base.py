"""Runtimes other than eager PyTorch, wrapped so the profiler measures them the same way.

A `RuntimeModule` is an `nn.Module` whose forward takes and returns torch tensors but runs
the model in another runtime (ONNX Runtime, TensorRT). Latency, memory, energy and accuracy
are then measured by the same code as for PyTorch. What torch cannot see inside the other
runtime (sparsity of its weights, MACs) the runtime module answers itself, from the artifact
(e.g. the ONNX graph) or from the PyTorch model it was exported from.
"""

from __future__ import annotations

import torch
from torch import nn

from ..measure.macs import MacsResult
from ..measure.sparsity import SparsitySummary


class RuntimeModule(nn.Module):
    """A model run by another runtime; subclasses set `runtime` and implement the methods."""

    runtime: str = ""
    format: str = ""

    def sparsity(self) -> SparsitySummary:
        """Sparsity of the weights as the runtime holds them."""
        raise NotImplementedError

    def macs(self, example: torch.Tensor) -> MacsResult:
        """Dense and effective MACs per sample of the model the runtime runs."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime's session (no-op by default)."""

    def train(self, mode: bool = True):  # a foreign runtime has no training mode to switch
        return self

    def to(self, *args, **kwargs):  # the runtime owns device placement (see its `device`)
        return self
