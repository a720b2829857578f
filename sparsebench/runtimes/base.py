"""Runtimes: what runs a model, behind one small interface and a registry.

A `Runtime` (one per file in this package, registered with `@register_runtime`) names the
formats it accepts and the file suffixes it opens itself; `sparsebench runtimes` lists them.
Eager torch accepts every format whose exporter restores an `nn.Module`; ONNX Runtime and
TensorRT open their own files. Adding a runtime is one new file here plus its import line in
`runtimes/__init__.py`.

A `RuntimeModule` is an `nn.Module` whose forward takes and returns torch tensors but runs
the model in another runtime (ONNX Runtime, TensorRT). Latency, memory, energy and accuracy
are then measured by the same code as for PyTorch. What torch cannot see inside the other
runtime (sparsity of its weights, MACs) the runtime module answers itself, from the artifact
(e.g. the ONNX graph) or from the PyTorch model it was exported from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..measure.macs import MacsResult, count_macs
from ..measure.sparsity import SparsitySummary, measure_sparsity
from ..registry import Registry

if TYPE_CHECKING:
    from ..load import LoadedModel, LoadOptions


class Runtime:
    """Base class: subclasses set `name`, `accepts` and, for file-based ones, `suffixes`."""

    name: str = ""
    description: str = ""
    accepts: tuple[str, ...] = ()  # format names it runs
    suffixes: tuple[str, ...] = ()  # files it opens itself (".onnx")

    def accepts_format(self, format_name: str) -> bool:
        """Whether this runtime runs models stored in `format_name`."""
        return format_name in self.accepts

    def open_file(self, path: Path, options: LoadOptions) -> LoadedModel:
        """Open a file of one of `suffixes`; the result's `reference` is checked by the caller.

        The returned model is a context manager (`RuntimeModule`): close it when done.
        """
        raise NotImplementedError(f"the {self.name} runtime opens no files itself")


RUNTIMES: Registry[Runtime] = Registry("runtime", list_command="sparsebench runtimes")


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator: register one instance of a runtime under its `name`."""
    RUNTIMES.register(cls.name, cls())
    return cls


def get_runtime(name: str) -> Runtime:
    """The registered runtime `name` (SparsebenchError naming close matches otherwise)."""
    return RUNTIMES.get(name)


def runtime_for_file(path: Path) -> Runtime | None:
    """The runtime that opens files with `path`'s suffix, or None for PyTorch files."""
    suffix = path.suffix.lower()
    for name in RUNTIMES:
        if suffix in RUNTIMES.get(name).suffixes:
            return RUNTIMES.get(name)
    return None


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

    def __enter__(self) -> RuntimeModule:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def train(self, mode: bool = True):  # a foreign runtime has no training mode to switch
        return self

    def to(self, *args, **kwargs):  # the runtime owns device placement (see its `device`)
        return self


def static_figures(model: nn.Module, example: torch.Tensor) -> tuple[SparsitySummary, MacsResult]:
    """Sparsity and MACs of a model, whichever runtime holds it (computed once per model).

    A `RuntimeModule` answers from what its runtime holds (the ONNX graph, an engine's
    sidecar); a PyTorch module is measured directly on `example` (one sample).
    """
    if isinstance(model, RuntimeModule):
        return model.sparsity(), model.macs(example)
    return measure_sparsity(model), count_macs(model, example)
