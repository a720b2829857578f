"""NVML for the GPU behind a torch CUDA device, opened on demand (never at import time)."""

from __future__ import annotations

import os
from typing import Any

from ..errors import SparsebenchError


def cuda_index(device: str) -> int:
    """The CUDA ordinal that `device` names; plain "cuda" means torch's current device."""
    _, _, index = device.partition(":")
    if not index:
        import torch

        return torch.cuda.current_device()
    if not index.isdigit():
        raise SparsebenchError(f"bad CUDA device {device!r}: expected 'cuda' or 'cuda:N'")
    return int(index)


def open_device(device: str) -> tuple[Any, Any]:
    """Initialise NVML and return (pynvml, handle) for `device`; close with `close_device`.

    The GPU is matched by UUID, so a CUDA_VISIBLE_DEVICES remapping is respected.
    """
    import pynvml

    pynvml.nvmlInit()
    try:
        return pynvml, _handle(pynvml, cuda_index(device))
    except BaseException:
        pynvml.nvmlShutdown()
        raise


def close_device(pynvml: Any) -> None:
    """Release the NVML reference taken by `open_device`."""
    try:
        pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        pass


def _handle(pynvml: Any, index: int) -> Any:
    uuid = _torch_uuid(index)
    if uuid is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(uuid)
        except pynvml.NVMLError:
            pass
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        raise SparsebenchError(
            f"cannot map cuda:{index} to an NVML device under CUDA_VISIBLE_DEVICES "
            "(torch gave no usable device UUID)"
        )
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _torch_uuid(index: int) -> str | None:
    import torch

    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except (AttributeError, AssertionError, RuntimeError):
        return None
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
