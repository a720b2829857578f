"""numba set up for the kernels: where compiled code is cached, which threading layer runs
them, the LLVM types the intrinsics use, and whether the expand instructions are there.
Imported before numba anywhere in the package, since numba reads its settings at import."""

from __future__ import annotations

import functools
import os
import tempfile

# numba's OpenMP layer (its own libgomp, not torch's) where it loads, else the workqueue layer.
# On this project's VMs workqueue's sleeping workers wake too slowly to share a 1 ms layer (two
# threads ran no faster than one; OpenMP ran 1.8x faster, docs/kernels-research.md). The OpenMP
# workers spin only GOMP_SPINCOUNT iterations (about 0.1 ms) after a region, then sleep, so they
# keep warm between the layers of one forward pass without fighting other pools for long.
os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")
os.environ.setdefault("GOMP_SPINCOUNT", "100000")


def _cache_dir() -> str:
    """Compiled kernels are cached per CPU model (the first compile takes about 10 s): in a
    user cache directory, since the installed package may not be writable; a temporary one
    when that is not writable either (numba refuses to import a cached function otherwise)."""
    chosen = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "sparsebench", "numba"
    )
    try:
        os.makedirs(chosen, exist_ok=True)
        with tempfile.TemporaryFile(dir=chosen):
            pass
    except OSError:
        chosen = tempfile.mkdtemp(prefix="sparsebench-numba-")
    return chosen


os.environ["NUMBA_CACHE_DIR"] = _cache_dir()

import numba  # noqa: E402
from llvmlite import binding as llvm  # noqa: E402
from llvmlite import ir  # noqa: E402

SEGMENT = 16  # columns per mask
F32, I16, I64 = ir.FloatType(), ir.IntType(16), ir.IntType(64)
V16F, V16B = ir.VectorType(F32, SEGMENT), ir.VectorType(ir.IntType(1), SEGMENT)
V16I = ir.VectorType(ir.IntType(32), SEGMENT)


@functools.cache
def has_avx512() -> bool:
    """Whether the CPU numba compiles for can run the expand kernel (asked once): the host's
    features, unless NUMBA_CPU_NAME names another target (then NUMBA_CPU_FEATURES decides)."""
    if numba.config.CPU_NAME not in (None, "", "host"):
        return "+avx512f" in (numba.config.CPU_FEATURES or "").split(",")
    return bool(llvm.get_host_cpu_features().get("avx512f"))


def set_threads(count: int) -> None:
    """Use `count` numba threads (at most NUMBA_NUM_THREADS, fixed at import)."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
