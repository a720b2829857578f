"""The environment a measurement ran in: library versions, CPU, threads, GPU and driver."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import psutil
import torch

from . import __version__


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_info(device: str) -> dict[str, Any]:
    if not device.startswith("cuda"):
        return {"gpu": None, "driver": None}
    index = torch.device(device).index or 0
    info: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(index),
        "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability(index))),
        "cuda": torch.version.cuda,
        "driver": None,
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except Exception as exc:  # NVML missing or refused: record why, keep going
        info["driver_unavailable"] = str(exc)
    return info


def collect_environment(device: str = "cpu") -> dict[str, Any]:
    """Describe this machine and software; touches CUDA only when `device` is a GPU."""
    return {
        "sparsebench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_total_mb": round(psutil.virtual_memory().total / 2**20, 1),
        "torch_threads": torch.get_num_threads(),
        **_gpu_info(device),
    }
