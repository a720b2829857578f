"""Kernel benchmark (issue 12): dense torch, dense ONNX Runtime, torch CSR and sparsebench's
bitmask kernels on stacks of 4096x4096 layers larger than twice the last-level cache, in one
interleaved run per workload, each row beside the memory-bandwidth bound. Also reachable as
`sparsebench bench-formats --kernels`.

Usage: python benchmarks/kernels.py [--quick] [--output docs/kernels-benchmark.md]
"""

import os

# Idle pools stop spinning soon, so interleaved candidates do not slow each other: torch's and
# numba's OpenMP pools spin at most GOMP_SPINCOUNT iterations (about 0.1 ms; torch reads it at
# import), ONNX Runtime's pool is told not to spin per session, and every timed block is
# followed by a 20 ms pause (TimingConfig.settle_seconds) before the next candidate starts.
os.environ.setdefault("GOMP_SPINCOUNT", "100000")

from sparsebench.cli import app  # noqa: E402

if __name__ == "__main__":
    arguments = ["bench-formats", "--kernels", *__import__("sys").argv[1:]]
    app(arguments, prog_name="benchmarks/kernels.py")
