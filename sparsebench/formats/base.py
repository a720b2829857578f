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

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import load_dataset
from ..errors import SparsebenchError
from ..inputs import Batch
from ..load import LoadedModel
from ..measure.accuracy import fit_samples
from ..registry import Registry
from ..verify import Verification


@dataclass(frozen=True)
class NoOptions:
    """The options of a format that has none of its own."""


@dataclass(frozen=True)
class ExportConfig:
    """What every export shares; `options` is the format's own small config dataclass
    (`Exporter.options_type`: `Semi24Options`, `ChannelsOptions`, ...), its defaults if None.

    `ExportConfig.of(format, **options)` builds one from keyword options (the CLI's flags)
    and refuses, in one line, an option the format does not take.
    """

    format: str
    device: str = "cpu"
    data: str | None = None  # real inputs for verification (taylor, tensorrt int8 calibration)
    verify_samples: int = 64
    options: Any = None
    image: Any = None  # data.ImageOptions for an image folder given as `data`

    def __post_init__(self):
        """Refuse a bad device, count or format before the checkpoint is even loaded."""
        from ..device import check_device
        from ..options import check_count

        check_device(self.device)
        check_count("verify_samples", self.verify_samples, 1)
        wanted = FORMATS.get(self.format).options_type
        if self.options is None:
            object.__setattr__(self, "options", wanted())
        elif not isinstance(self.options, wanted):
            found = type(self.options).__name__
            raise SparsebenchError(f"the {self.format} format takes {wanted.__name__}, not {found}")

    @classmethod
    def of(cls, format: str, device: str = "cpu", data: str | None = None,
           verify_samples: int = 64, image: Any = None,
           **options: Any) -> ExportConfig:  # fmt: skip
        """An ExportConfig with the format's options given as keywords (`dtype="float16"`)."""
        wanted = FORMATS.get(format).options_type
        known = [f.name for f in fields(wanted)]
        unknown = [name for name in options if name not in known]
        if unknown:
            takes = ", ".join(_flag(k) for k in known) if known else "no options of its own"
            raise SparsebenchError(
                f"the {format} format takes no {_flag(unknown[0])} (it takes {takes})"
            )
        return cls(format, device, data, verify_samples, wanted(**options), image)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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
    options_type: type = NoOptions  # the format's own options dataclass (frozen)
    tolerance: float = 1e-4  # max relative error allowed in verification
    kernel_evidence: tuple[str, ...] = ()  # profiler op-name fragments of the sparse kernels
    file_based: bool = False  # writes its own file (export_file), not a sparsebench artifact

    def convert(self, model: nn.Module, example: torch.Tensor, config: ExportConfig) -> Conversion:
        raise NotImplementedError

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        raise NotImplementedError

    def check_ready(self, config: ExportConfig) -> None:
        """Refuse, before anything loads, what this machine or the options cannot do."""

    def export_file(self, loaded, output: Path, config: ExportConfig, force: bool):
        """File-based formats: convert the loaded model, verify and write `output` themselves.

        `loaded` is the source on the CPU (a `LoadedModel`); returns an `ExportResult`;
        `output` was already checked to be writable.
        """
        raise NotImplementedError

    def stored_bytes(self, model: nn.Module) -> int:
        """Bytes the weights of a restored model take in this format, measured from it."""
        return sum(_stored_tensor_bytes(t) for t in model.state_dict().values())

    def converted_layers(self, model: nn.Module) -> list[str]:
        """Names of the layers of a restored model whose weight this format compressed."""
        return [
            name
            for name, module in model.named_modules()
            if isinstance(getattr(module, "weight", None), torch.Tensor)
            and _is_compressed(module.weight)
        ]

    def artifact_tolerance(self, model: nn.Module) -> float:
        """Tolerance of a restored artifact, from the dtype its weights really have."""
        half = any(t.dtype in (torch.float16, torch.bfloat16) for t in model.state_dict().values())
        return max(self.tolerance, 1e-2) if half else self.tolerance

    def tolerance_for(self, config: ExportConfig) -> float:
        """Verification tolerance; half-precision formats allow about 1e-2."""
        half = getattr(config.options, "dtype", None) in ("float16", "bfloat16")
        return 1e-2 if half else self.tolerance


@dataclass
class ExportResult:
    """What `export` wrote: the artifact path and its report."""

    path: Path
    format: str
    layers: list[dict]
    stored_bytes: int
    verification: Verification
    notes: list[str]
    warnings: list[str] = field(default_factory=list)  # e.g. all-zero layers (measure/sanity)


def verification_inputs(loaded: LoadedModel, config: ExportConfig) -> tuple[Batch, str]:
    """A batch of real samples when `config.data` is given, else a synthetic batch."""
    if config.data:
        if len(loaded.specs.specs) > 1:
            raise SparsebenchError(
                f"--data feeds one input; this model takes {', '.join(loaded.specs.names)}"
            )
        dataset = load_dataset(config.data, "test", image=config.image)
        x = fit_samples(dataset.x[: config.verify_samples], loaded.input_shape)
        return Batch((x.to(loaded.specs.specs[0].torch_dtype),)), config.data
    return loaded.synthetic(seed=0, batch=config.verify_samples), "synthetic"


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


def _is_compressed(tensor: torch.Tensor) -> bool:
    semi = getattr(torch.sparse, "SparseSemiStructuredTensor", ())
    return tensor.layout != torch.strided or isinstance(tensor, semi)


def _stored_tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds: values and indices of a sparse one, packed parts of a 2:4 one."""
    if tensor.layout == torch.sparse_csr:
        parts = (tensor.values(), tensor.col_indices(), tensor.crow_indices())
        return tensor_bytes(*parts)
    if tensor.layout == torch.sparse_coo:
        return tensor_bytes(tensor._values(), tensor._indices())
    packed = ("packed", "meta", "packed_t", "meta_t", "compressed_swizzled_bitmask")
    if any(getattr(tensor, part, None) is not None for part in packed):
        return tensor_bytes(
            *(getattr(tensor, p) for p in packed if getattr(tensor, p, None) is not None)
        )
    return tensor_bytes(tensor)
