"""Device checks, kept here so runtime fallbacks and test skips agree (nothing runs at import)."""

from __future__ import annotations

import os
import re
import sys

import torch

from .errors import SparsebenchError

_CUDA = re.compile(r"cuda(?::(\d+))?")


def cuda_available() -> bool:
    """Whether a CUDA GPU is usable (only called when needed, never at import time)."""
    return torch.cuda.is_available()


def check_device(device: str) -> str:
    """Validate a device string ('cpu', 'cuda', 'cuda:N'); error clearly when no GPU exists."""
    if device == "cpu":
        return device
    match = _CUDA.fullmatch(device) if isinstance(device, str) else None
    if match is None:
        raise SparsebenchError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    if not cuda_available():
        raise SparsebenchError(
            f"--device {device} was requested but no CUDA GPU is available "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'})"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise SparsebenchError(f"--device {device}: only {torch.cuda.device_count()} GPU(s)")
    return device


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_threads(threads: int | None, name: str = "--threads") -> int | None:
    """None keeps torch's thread count; otherwise 1 to the CPU count (more is capped, warned).

    Thousands of threads make torch crash, so a count above `available_cpus()` is lowered to
    it with a warning on stderr; the capped count is returned for the caller to keep.
    """
    if threads is None:
        return None
    if not isinstance(threads, int) or isinstance(threads, bool):
        raise SparsebenchError(f"{name} must be an integer (got {threads!r})")
    if threads < 1:
        raise SparsebenchError(f"{name} must be >= 1 (got {threads})")
    cpus = available_cpus()
    if threads > cpus:
        print(f"warning: {name} {threads} capped to {cpus}, the CPUs available", file=sys.stderr)
        return cpus
    return threads
