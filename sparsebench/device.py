"""Device checks, kept here so runtime fallbacks and test skips agree (nothing runs at import)."""

from __future__ import annotations

import torch

from .errors import SparsebenchError


def cuda_available() -> bool:
    """Whether a CUDA GPU is usable (only called when needed, never at import time)."""
    return torch.cuda.is_available()


def check_device(device: str) -> str:
    """Validate a device string ('cpu', 'cuda', 'cuda:N'); error clearly when no GPU exists."""
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not cuda_available():
            raise SparsebenchError(
                f"--device {device} was requested but no CUDA GPU is available "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'})"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise SparsebenchError(f"--device {device}: only {torch.cuda.device_count()} GPU(s)")
        return device
    raise SparsebenchError(f"unknown device '{device}': use cpu, cuda or cuda:N")


def check_threads(threads: int | None) -> int | None:
    """None keeps torch's thread count; otherwise at least one thread."""
    if threads is not None and threads < 1:
        raise SparsebenchError(f"--threads must be >= 1 (got {threads})")
    return threads
