"""The exporter interface: convert a dense (masks folded) model into a format, and rebuild it.

An exporter is one file in this package, registered with `@register_format`. It implements
- `convert(model, example, config) -> Conversion`: the runnable converted model, a report per
  layer (converted or skipped, with the reason) and the bytes its weights take in the format;
- `restore(model, payload, state_dict, device) -> nn.Module`: rebuild the runnable model on
  `device` from a freshly built architecture, the exporter's payload and the saved state_dict
  (what `load` calls);
- optionally `kernel_evidence`: profiler op-name fragments that prove its sparse kernels ran.
Verification against the dense reference and writing the artifact are shared (`export.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..registry import Registry


@dataclass(frozen=True)
class ExportConfig:
    """Options of `sparsebench export`; each exporter reads the ones it understands."""

    format: str
    device: str = "cpu"
    dtype: str | None = None  # "float16" / "bfloat16" (semi24); None keeps float32
    enforce: bool = False  # semi24: magnitude-prune to 2:4 first
    ratio: float | None = None  # channels: prune this fraction of channels first
    criterion: str = "l1"  # channels: l1 | l2 | bn | taylor
    data: str | None = None  # verification (taylor, tensorrt int8 calibration) inputs
    verify_samples: int = 64
    sparse_initializers: bool = False  # onnx: store mostly-zero weights as sparse_initializer
    sparse_weights: bool | None = None  # tensorrt: SPARSE_WEIGHTS flag; None = if 2:4 weights


@dataclass
class LayerReport:
    """What an exporter did with one layer."""

    name: str
    kind: str
    action: str  # "converted" | "skipped" | "pruned" | "removed" ...
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Conversion:
    """An exporter's output before verification and saving."""

    model: nn.Module
    layers: list[LayerReport]
    stored_bytes: int
    payload: dict[str, Any] = field(default_factory=dict)  # what `restore` needs (JSON-able)
    notes: list[str] = field(default_factory=list)
    reference: nn.Module | None = None  # the dense model after any pruning the exporter did


class Exporter:
    """Base class: subclasses set `name`, `tolerance` and implement convert/restore."""

    name: str = ""
    description: str = ""
    tolerance: float = 1e-4  # max relative error allowed in verification
    kernel_evidence: tuple[str, ...] = ()  # profiler op-name fragments of the sparse kernels
    file_based: bool = False  # writes its own file (export_file), not a sparsebench artifact

    def convert(self, model: nn.Module, example: torch.Tensor, config: ExportConfig) -> Conversion:
        raise NotImplementedError

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        raise NotImplementedError

    def export_file(self, source, output, config: ExportConfig, options, force: bool):
        """File-based formats: load `source`, build, verify and write `output` themselves.

        Returns an `export.ExportResult`; `output` was already checked to be writable.
        """
        raise NotImplementedError

    def tolerance_for(self, config: ExportConfig) -> float:
        """Verification tolerance; half-precision formats allow about 1e-2."""
        return 1e-2 if config.dtype in ("float16", "bfloat16") else self.tolerance


FORMATS: Registry[Exporter] = Registry("format", list_command="sparsebench formats")


def register_format(cls: type[Exporter]) -> type[Exporter]:
    """Class decorator: register one instance of an exporter under its `name`."""
    FORMATS.register(cls.name, cls())
    return cls


def get_exporter(name: str) -> Exporter:
    """The registered exporter `name` (SparsebenchError naming close matches otherwise)."""
    return FORMATS.get(name)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Swap the submodule at dotted path `name` for `new`."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def tensor_bytes(*tensors: torch.Tensor) -> int:
    """Bytes the tensors' elements take (values, indices, metadata alike)."""
    return sum(t.numel() * t.element_size() for t in tensors)
