"""The sparsebench checkpoint: a state_dict plus the metadata needed to rebuild and profile it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import atomic_write

FORMAT_KEY = "sparsebench"
FORMAT_VERSION = 1


@dataclass
class CheckpointMeta:
    """What a sparsebench checkpoint records beside the weights."""

    arch: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] | None = None
    dataset: str | None = None
    classes: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = "dense"
    export: dict[str, Any] = field(default_factory=dict)  # exporter report (formats/artifact.py)


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


def read_meta(obj: dict) -> CheckpointMeta:
    """The metadata of a loaded sparsebench checkpoint payload."""
    raw = dict(obj[FORMAT_KEY])
    raw.pop("version", None)
    known = CheckpointMeta.__dataclass_fields__
    return CheckpointMeta(**{k: v for k, v in raw.items() if k in known})
