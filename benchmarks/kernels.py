"""Kernel benchmark (issue 12): dense torch, dense ONNX Runtime, torch CSR and sparsebench's
bitmask kernels on stacks of 4096x4096 layers larger than twice the last-level cache, in one
interleaved run per workload, each row beside the memory-bandwidth bound. Also reachable as
`sparsebench bench-formats --kernels`.

Usage: python benchmarks/kernels.py [--quick] [--output docs/kernels-benchmark.md]
"""

import os

# Idle pools sleep instead of spinning, so interleaved candidates do not slow each other:
# torch's OpenMP pool reads this at import (ONNX Runtime's is told per session, numba's
# workqueue layer always sleeps).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sparsebench.cli import app  # noqa: E402

if __name__ == "__main__":
    arguments = ["bench-formats", "--kernels", *__import__("sys").argv[1:]]
    app(arguments, prog_name="benchmarks/kernels.py")
