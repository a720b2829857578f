"""Size of the serialized artifact in MB (2**20 bytes)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from ..results import MB


def file_size_mb(path: str | Path) -> float:
    """Bytes of a file on disk, in MB (2**20 bytes); of a model folder (a Hugging Face
    `save_pretrained` directory), the regular files directly in it."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / MB
    return path.stat().st_size / MB


def state_dict_size_mb(model: nn.Module) -> float:
    """Bytes of `torch.save(model.state_dict())` written to memory, in MB (2**20 bytes)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / MB
