"""Feasibility probe for issue 12: can a numba SpMV/SpMM beat dense torch on a weight stack
too big for the cache? Not part of the package; needs `pip install numba`.

Times, interleaved on `--threads` threads (default 2), a stack of distinct 4096x4096 fp32
Linear layers whose dense weights exceed twice the last-level cache: dense torch, torch CSR
and a numba CSR kernel with uint16 column indices (one prange chunk per thread, rows split by
non-zeros). Each candidate is checked against dense first. Prints the median per-round time,
the bytes each moves, the machine's measured read bandwidth and the fraction of it achieved.

Usage: python benchmarks/kernels_probe.py [--sparsity 0.5,0.8,0.9,0.95] [--batch 1,32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # its workers do not spin
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # nor do torch's, once set before import

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from numba import njit, prange  # noqa: E402

SIZE = 4096


def llc_bytes() -> int:
    """The last-level cache size from sysfs (32 MiB if it cannot be read)."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    for entry in os.listdir(base) if os.path.isdir(base) else []:
        try:
            with open(f"{base}/{entry}/size", encoding="utf-8") as handle:
                text = handle.read().strip()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20}.get(text[-1], 1)
        best = max(best, int(text.rstrip("KM")) * scale)
    return best or 32 * 2**20


@njit(parallel=True, fastmath=True, cache=True)
def _spmv(bounds, indptr, cols, vals, x, y):
    for chunk in prange(bounds.shape[0] - 1):
        for row in range(bounds[chunk], bounds[chunk + 1]):
            acc = np.float32(0.0)
            for k in range(indptr[row], indptr[row + 1]):
                acc += vals[k] * x[cols[k]]
            y[row] = acc


@njit(parallel=True, fastmath=True, cache=True)
def _spmm(bounds, indptr, cols, vals, xt, yt):
    """yt[row, :] = sum_k vals[k] * xt[cols[k], :] (activations transposed: batch innermost)."""
    batch = xt.shape[1]
    for chunk in prange(bounds.shape[0] - 1):
        for row in range(bounds[chunk], bounds[chunk + 1]):
            out = yt[row]
            for n in range(batch):
                out[n] = 0.0
            for k in range(indptr[row], indptr[row + 1]):
                value = vals[k]
                src = xt[cols[k]]
                for n in range(batch):
                    out[n] += value * src[n]


class CsrU16:
    """One layer in CSR with int32 row pointers, uint16 columns and fp32 values."""

    def __init__(self, weight: torch.Tensor, threads: int):
        w = weight.numpy()
        mask = w != 0
        self.indptr = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
        self.cols = np.nonzero(mask)[1].astype(np.uint16)
        self.vals = w[mask].astype(np.float32)
        nnz = self.indptr[-1]
        cuts = [int(np.searchsorted(self.indptr, nnz * i / threads)) for i in range(threads)]
        self.bounds = np.array([*cuts, w.shape[0]], dtype=np.int64)
        self.bounds[0] = 0
        self.rows = w.shape[0]

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.cols.nbytes + self.vals.nbytes

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 1:
            y = np.empty((1, self.rows), np.float32)
            _spmv(self.bounds, self.indptr, self.cols, self.vals, x[0], y[0])
            return y
        yt = np.empty((self.rows, x.shape[0]), np.float32)
        _spmm(self.bounds, self.indptr, self.cols, self.vals, np.ascontiguousarray(x.T), yt)
        return np.ascontiguousarray(yt.T)


def read_bandwidth(threads: int) -> float:
    """GB/s of a 2x-LLC-sized torch.sum with `threads` threads (best of 5)."""
    data = torch.ones(max(2 * llc_bytes(), 256 * 2**20) // 4)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best / 1e9


def interleaved(variants: dict, rounds: int) -> dict[str, float]:
    """Median per-round ms of each variant, rounds rotating."""
    names, times = list(variants), {name: [] for name in variants}
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            start = time.perf_counter()
            variants[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", default="0.5,0.8,0.9,0.95")
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    layers = max(2, -(-2 * llc_bytes() // (SIZE * SIZE * 4)) + 1)
    bandwidth = read_bandwidth(args.threads)
    print(f"LLC {llc_bytes() / 2**20:.0f} MiB, {layers} layers of {SIZE}x{SIZE} "
          f"({layers * SIZE * SIZE * 4 / 2**20:.0f} MiB dense), read bandwidth "
          f"{bandwidth:.1f} GB/s, {args.threads} threads, numba {numba.__version__} "
          f"({numba.config.THREADING_LAYER})")  # fmt: skip
    print("| sparsity | batch | candidate | ms | MB moved | bound ms | of bound | vs dense |")
    print("|---|---|---|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)
    for sparsity in [float(s) for s in args.sparsity.split(",")]:
        weights = []
        for _ in range(layers):
            w = torch.randn(SIZE, SIZE, generator=generator)
            w[torch.rand(SIZE, SIZE, generator=generator) < sparsity] = 0
            weights.append(w)
        csr = [w.to_sparse_csr() for w in weights]
        mine = [CsrU16(w, args.threads) for w in weights]
        for batch in [int(b) for b in args.batch.split(",")]:
            x = torch.randn(batch, SIZE, generator=generator)
            xn = x.numpy()

            def dense(x=x, weights=weights):
                for w in weights:
                    torch.mm(x, w.t())

            def torch_csr(x=x, csr=csr):
                for w in csr:
                    torch.sparse.mm(w, x.t())

            def numba_csr(xn=xn, mine=mine):
                for layer in mine:
                    layer(xn)

            reference = torch.mm(x, weights[0].t())
            got = torch.from_numpy(mine[0](xn))
            error = (got - reference).abs().max().item() / reference.abs().max().item()
            assert error < 1e-4, f"numba kernel disagrees with dense: {error:.2e}"
            with torch.inference_mode():
                for fn in (dense, torch_csr, numba_csr):
                    fn()  # compile and warm
                times = interleaved({"dense torch": dense, "torch CSR": torch_csr,
                                     "numba CSR u16": numba_csr}, args.rounds)  # fmt: skip
            moved = {"dense torch": layers * SIZE * SIZE * 4,
                     "torch CSR": sum(c.values().numel() * 12 for c in csr),
                     "numba CSR u16": sum(m.nbytes for m in mine)}  # fmt: skip
            for name, ms in times.items():
                bound = moved[name] / (bandwidth * 1e9) * 1e3
                mib = moved[name] / 2**20
                speedup = times["dense torch"] / ms
                print(f"| {sparsity:.0%} | {batch} | {name} | {ms:.2f} | {mib:.0f} | {bound:.2f} "
                      f"| {bound / ms:.0%} | x{speedup:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
