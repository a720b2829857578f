"""The sparsebench checkpoint: a state_dict plus the metadata needed to rebuild and profile it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import atomic_write
from .metadata import check_meta_fields

FORMAT_KEY = "sparsebench"
FORMAT_VERSION = 1


@dataclass
class CheckpointMeta:
    """What a sparsebench checkpoint records beside the weights."""

    arch: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] | None = None
    inputs: list[dict] | None = None  # `InputSpecs.to_json()`: names, shapes, dtypes, ranges
    dataset: str | None = None
    classes: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = "dense"
    export: dict[str, Any] = field(default_factory=dict)  # export report, read by artifact.py


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: CheckpointMeta,
    force: bool = False,
    tensors: dict[str, torch.Tensor] | None = None,
):
    """Write `model`'s state_dict with `meta` atomically; loadable with weights_only=True.

    `tensors` are saved beside the state_dict (an exporter's reference outputs, say).
    """
    payload = {
        FORMAT_KEY: {"version": FORMAT_VERSION, **asdict(meta)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tensors": {k: v.detach().cpu() for k, v in (tensors or {}).items()},
    }
    atomic_write(path, lambda f: torch.save(payload, f), force=force)


def is_sparsebench_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is a sparsebench checkpoint payload."""
    return isinstance(obj, dict) and isinstance(obj.get(FORMAT_KEY), dict) and "state_dict" in obj


def read_meta(obj: dict, source: str = "checkpoint") -> CheckpointMeta:
    """The metadata of a loaded sparsebench checkpoint payload, type-checked field by field.

    The metadata comes from a file, so nothing in it is trusted: a field of the wrong type
    is a one-line `SparsebenchError` naming it (see `metadata.check_meta_fields`).
    """
    raw = dict(obj[FORMAT_KEY])
    raw.pop("version", None)
    known = CheckpointMeta.__dataclass_fields__
    fields = check_meta_fields({k: v for k, v in raw.items() if k in known}, source)
    return CheckpointMeta(**fields)
