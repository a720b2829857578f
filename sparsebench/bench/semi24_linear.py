"""Layer-level 2:4 benchmark: one nn.Linear, dense vs semi-structured, in the same precision.

GPU only (sm80+). Both variants run in `dtype` on the same 2:4-pruned weight, so the ratio
isolates the sparse kernel; timings are CUDA-event samples in interleaved rounds
(`time_interleaved`), and the speedup is the median of per-round ratios.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import SparsebenchError
from ..formats._semi24_backend import HardwareUnavailable, check_hardware, eligibility, from_dense
from ..formats._semi24_pattern import enforce_24_
from ..formats.semi24 import resolve_dtype
from ..measure.interleaved import TimingConfig, time_interleaved


def _layers(shape, dtype, device, backend):
    out_features, in_features = shape
    dense = nn.Linear(in_features, out_features).to(device=device, dtype=dtype).eval()
    enforce_24_(dense.weight.data)
    ok, reason = eligibility(dense, dtype, backend)
    if not ok:
        raise SparsebenchError(f"Linear {out_features}x{in_features}: {reason}")
    sparse = copy.deepcopy(dense)
    sparse.weight = nn.Parameter(from_dense(sparse.weight, backend), requires_grad=False)
    return dense, sparse


def benchmark_linear_24(
    shape: tuple[int, int],
    batch: int,
    dtype: str = "float16",
    device: str = "cuda",
    rounds: int = 7,
    block_seconds: float = 0.2,
    seed: int = 0,
) -> dict:
    """Time `nn.Linear` of weight `shape` (out, in) on `batch` rows: dense vs 2:4, same dtype.

    Raises HardwareUnavailable without an sm80+ GPU. Returns medians (ms), the speedup
    (dense / 2:4, > 1 means 2:4 is faster) with its p10/p90 over rounds, the raw samples and
    the largest output difference between the two layers.
    """
    ok, reason, backend = check_hardware(device)
    if not ok:
        raise HardwareUnavailable(reason)
    torch_dtype = resolve_dtype(dtype)
    torch.manual_seed(seed)
    dense, sparse = _layers(shape, torch_dtype, device, backend)
    x = torch.randn(batch, shape[1], device=device, dtype=torch_dtype)
    with torch.inference_mode():
        max_abs_diff = float((dense(x).float() - sparse(x).float()).abs().max())
        timing = time_interleaved(
            {"dense": lambda: dense(x), "semi24": lambda: sparse(x)},
            TimingConfig(rounds=rounds, block_seconds=block_seconds),
            device,
        )
    speedup = timing.speedup("semi24", "dense")
    return {
        "shape": list(shape),
        "batch": batch,
        "dtype": dtype,
        "backend": backend,
        "device": reason,
        "dense_ms": timing.median_ms("dense"),
        "semi24_ms": timing.median_ms("semi24"),
        "speedup": speedup.median,
        "speedup_p10": speedup.low,
        "speedup_p90": speedup.high,
        "rounds": speedup.rounds,
        "max_abs_diff": max_abs_diff,
        "dense_samples_ms": timing.samples("dense"),
        "semi24_samples_ms": timing.samples("semi24"),
    }
