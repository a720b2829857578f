"""The in-run reference workloads a check divides every model's latency by.

A ratio to a reference cancels whatever slows model and reference alike: a slower machine, a
noisy neighbour sharing the core, frequency drift. It cancels only what both feel, so the
reference should resemble the models. Measured on this project's 2-core CI VM under a bursty
load generator (docs/check-gate.md): the small-MLP reference kept small models' ratios within
x0.97-1.05 of an idle baseline, the 128x128 matmul let them drift to x1.33, because one big
GEMM kernel reacts to contention unlike a model made of many small operator calls.

- `mlp` (default): a fixed, seeded 64-256-256-10 ReLU MLP at batch 1: operator dispatch plus
  small GEMMs, like the small and pruned models a CI gate times.
- `matmul`: one `reference_matmul` x `reference_matmul` float32 matmul: compute-bound, for
  profiles of large compute-bound models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

KINDS = ("mlp", "matmul")


def describe(kind: str, size: int) -> str:
    """How the reference is named in baselines and reports."""
    if kind == "matmul":
        return f"matmul {size}x{size}"
    return "mlp 64-256-256-10 batch 1"


def build_reference(kind: str, size: int, device: str) -> Callable[[], object]:
    """The reference workload as a no-argument callable on `device`."""
    generator = torch.Generator().manual_seed(0)
    if kind == "matmul":
        a = torch.randn(size, size, generator=generator).to(device)
        b = torch.randn(size, size, generator=generator).to(device)
        return functools.partial(torch.mm, a, b)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    model = model.eval().to(device)
    example = torch.randn(1, 64, generator=generator).to(device)
    return functools.partial(model, example)
