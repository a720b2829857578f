"""Probe for issue 12: batch-1 time of the bitmask kernel (`sparsebench.kernels.bitmask`)
against dense torch on a stack of distinct 4096x4096 layers too big for the cache.

Medians of 20 calls, not interleaved (a probe, not the issue's benchmark); the kernel is
checked against dense first. Needs the `kernels` extra. Measurements: docs/kernels-research.md.

Usage: python benchmarks/kernels_bitmask_probe.py
"""

import statistics
import time

import numpy as np
import torch

from sparsebench.kernels import bitmask

N = 4096
LAYERS = 3  # 192 MiB dense: more than twice this machine's 32 MiB last-level cache


def _median_ms(fn) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(20):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    torch.set_num_threads(2)
    bitmask.set_threads(2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, N)).astype(np.float32)
    tx = torch.from_numpy(x[0])
    for sparsity in (0.5, 0.8, 0.9, 0.95):
        weights = []
        for _ in range(LAYERS):
            w = rng.standard_normal((N, N)).astype(np.float32)
            w[rng.random((N, N)) < sparsity] = 0
            weights.append(w)
        packed = [bitmask.pack(w) for w in weights]
        got = bitmask.matmul(*packed[-1], x)
        assert np.allclose(got, x @ weights[-1].T, rtol=1e-3, atol=1e-2)
        ms = _median_ms(lambda packed=packed: [bitmask.matmul(*p, x) for p in packed])
        tensors = [torch.from_numpy(w) for w in weights]
        dense = _median_ms(lambda tensors=tensors: [torch.mv(w, tx) for w in tensors])
        nbytes = sum(p[1].nbytes + p[2].nbytes for p in packed)
        print(
            f"{sparsity:.0%}: bitmask {ms:.2f} ms ({nbytes / ms / 1e6:.1f} GB/s, "
            f"{nbytes / 2**20:.0f} MiB) dense torch {dense:.2f} ms -> x{dense / ms:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
