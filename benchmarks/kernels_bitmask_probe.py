"""Prototype for issue 12: batch-1 SpMV on a bitmask + packed-values layout with AVX-512 expand.

Per 16-column segment of a row: a 16-bit mask; the packed non-zeros are loaded 16 at a time
and spread by `llvm.x86.avx512.mask.expand` (a register expand: the memory-operand
`llvm.masked.expandload` measured slower here), then multiplied with the contiguous 16 inputs;
four segments per step with four accumulators. No gathers: the work per segment does not grow
with density. Needs numba and an AVX-512 CPU; not part of the package. The values array is
padded with 16 zeros because each step loads 16 values. Measurements: docs/kernels-research.md.

Usage: python benchmarks/kernels_bitmask_probe.py
"""

import os
import statistics
import time

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

F32, I16, I64 = ir.FloatType(), ir.IntType(16), ir.IntType(64)
V16F, V16B = ir.VectorType(F32, 16), ir.VectorType(ir.IntType(1), 16)


@intrinsic
def row_dot(typingctx, vals, vstart, masks, mstart, nseg, x):
    sig = types.float32(vals, vstart, masks, mstart, nseg, x)

    def codegen(context, builder, signature, args):
        vals_a, vstart_v, masks_a, mstart_v, nseg_v, x_a = args
        vals_p = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=vals_a).data
        masks_p = cgutils.create_struct_proxy(signature.args[2])(
            context, builder, value=masks_a
        ).data
        x_p = cgutils.create_struct_proxy(signature.args[5])(context, builder, value=x_a).data
        module = builder.module
        expand = cgutils.get_or_insert_function(
            module, ir.FunctionType(V16F, [V16F, V16F, V16B]), "llvm.x86.avx512.mask.expand.v16f32"
        )
        ctpop = cgutils.get_or_insert_function(
            module, ir.FunctionType(I16, [I16]), "llvm.ctpop.i16"
        )
        zero = ir.Constant(V16F, None)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(4)]
        off_ptr = cgutils.alloca_once_value(builder, vstart_v)
        quarter = builder.udiv(nseg_v, ir.Constant(I64, 4))
        with cgutils.for_range(builder, quarter) as loop:
            base_s = builder.mul(loop.index, ir.Constant(I64, 4))
            off = builder.load(off_ptr)
            ms = []
            for u in range(4):
                s = builder.add(base_s, ir.Constant(I64, u))
                ms.append(builder.load(builder.gep(masks_p, [builder.add(mstart_v, s)])))
            offs = [off]
            for u in range(3):
                offs.append(builder.add(offs[-1], builder.zext(builder.call(ctpop, [ms[u]]), I64)))
            builder.store(
                builder.add(offs[-1], builder.zext(builder.call(ctpop, [ms[3]]), I64)), off_ptr
            )
            for u in range(4):
                s = builder.add(base_s, ir.Constant(I64, u))
                raw = builder.load(
                    builder.bitcast(builder.gep(vals_p, [offs[u]]), V16F.as_pointer()), align=4
                )
                v = builder.call(expand, [raw, zero, builder.bitcast(ms[u], V16B)])
                xp = builder.bitcast(
                    builder.gep(x_p, [builder.mul(s, ir.Constant(I64, 16))]), V16F.as_pointer()
                )
                xv = builder.load(xp, align=4)
                prod = builder.fmul(v, xv, flags=["fast"])
                builder.store(builder.fadd(builder.load(accs[u]), prod, flags=["fast"]), accs[u])
        acc = builder.fadd(
            builder.fadd(builder.load(accs[0]), builder.load(accs[1]), flags=["fast"]),
            builder.fadd(builder.load(accs[2]), builder.load(accs[3]), flags=["fast"]),
            flags=["fast"],
        )
        total = ir.Constant(F32, 0.0)
        for i in range(16):
            total = builder.fadd(
                total, builder.extract_element(acc, ir.Constant(ir.IntType(32), i)), flags=["fast"]
            )
        return total

    return sig, codegen


@njit(parallel=True, fastmath=True)
def spmv_mask(rowstart, masks, vals, x, y, nseg):
    for r in prange(y.shape[0]):
        y[r] = row_dot(vals, rowstart[r], masks, r * nseg, nseg, x)


N = 4096
rng = np.random.default_rng(0)


def make(s):
    w = rng.standard_normal((N, N)).astype(np.float32)
    w[rng.random((N, N)) < s] = 0
    return w


def prep(w):
    mask = w != 0
    bits = mask.reshape(N, N // 16, 16)
    masks = (bits * (1 << np.arange(16))).sum(-1).astype(np.uint16)
    vals = np.concatenate([w[mask], np.zeros(16, np.float32)])  # padding: expand may touch up to 16
    rowstart = np.concatenate([[0], np.cumsum(mask.sum(1))[:-1]]).astype(np.int64)
    return rowstart, masks.ravel(), vals


x = rng.standard_normal(N).astype(np.float32)


def t(fn):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(20):
        s = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - s)
    return statistics.median(ts) * 1e3


def main() -> None:
    torch.set_num_threads(2)
    numba.set_num_threads(2)
    for s in (0.5, 0.8, 0.9, 0.95):
        ws = [make(s) for _ in range(3)]  # 192 MiB dense: not cache-resident
        tw = [torch.from_numpy(w) for w in ws]
        tx = torch.from_numpy(x)
        ps = [prep(w) for w in ws]
        y = np.empty(N, np.float32)
        ms = t(lambda ps=ps, y=y: [spmv_mask(*p, x, y, N // 16) for p in ps])
        ref = ws[-1] @ x
        assert np.allclose(y, ref, rtol=1e-3, atol=1e-2), np.abs(y - ref).max()
        dense = t(lambda tw=tw, tx=tx: [torch.mv(w, tx) for w in tw])
        nbytes = sum(p[1].nbytes + p[2].nbytes for p in ps)
        print(
            f"s={s} bitmask+expand: {ms:.2f} ms ({nbytes / ms / 1e6:.1f} GB/s, "
            f"{nbytes / 2**20:.0f} MiB) dense torch {dense:.2f} ms -> x{dense / ms:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
