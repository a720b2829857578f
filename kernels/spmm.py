"""The batch-N kernel (SpMM) of the bitmask layout (see bitmask.py): the packed weight times
x^T for many input rows at once (a batch, a sequence, a convolution's output positions).

Each row block's columns are decoded once from the masks (a register compress per segment on
AVX-512, a set-bit loop elsewhere); then tiles of 64, 32 or 16 inputs of x^T run outermost over
the block's rows, each tile keeping at least four independent multiply-add chains in vector
registers, so no lane is spent on a zero weight (docs/kernels-research.md).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from ._numba import I16, I64, SEGMENT, V16B, V16F, V16I, has_avx512

SPMM_SERIAL_BELOW = 1 << 20  # multiply-adds under which one thread beats a parallel region


def _tile_intrinsic(width: int):
    """out[t : t + 16 width] = sum over q < count of values[start + q] * xt[cols[q], t : ...],
    in vector accumulators held in registers across the row's non-zeros: `width` per non-zero,
    and 4 / width sets of them taking turns, so at least four independent multiply-add chains
    hide the multiply-add latency however narrow the tile."""
    sets = max(1, 4 // width)

    @intrinsic
    def tile(typingctx, values, start, cols, count, xt, stride, t, out):
        signature = types.void(values, start, cols, count, xt, stride, t, out)

        def codegen(context, builder, sig, args):
            values_a, start_v, cols_a, count_v, xt_a, stride_v, t_v, out_a = args

            def data(index, value):
                return cgutils.create_struct_proxy(sig.args[index])(
                    context, builder, value=value
                ).data

            values_p, cols_p, xt_p, out_p = (data(0, values_a), data(2, cols_a),
                                             data(4, xt_a), data(7, out_a))  # fmt: skip
            zero = ir.Constant(V16F, None)
            banks = [[cgutils.alloca_once_value(builder, zero) for _ in range(width)]
                     for _ in range(sets)]  # fmt: skip
            broadcast = ir.Constant(ir.VectorType(ir.IntType(32), SEGMENT), [0] * SEGMENT)

            def step(q, bank):
                weight = builder.load(builder.gep(values_p, [builder.add(start_v, q)]))
                spread = builder.insert_element(zero, weight, ir.Constant(ir.IntType(32), 0))
                spread = builder.shuffle_vector(spread, zero, broadcast)
                column = builder.sext(builder.load(builder.gep(cols_p, [q])), I64)
                row = builder.add(builder.mul(column, stride_v), t_v)
                for u, accumulator in enumerate(bank):
                    at = builder.gep(xt_p, [builder.add(row, ir.Constant(I64, SEGMENT * u))])
                    inputs = builder.load(builder.bitcast(at, V16F.as_pointer()), align=4)
                    product = builder.fmul(spread, inputs, flags=["fast"])
                    total = builder.fadd(builder.load(accumulator), product, flags=["fast"])
                    builder.store(total, accumulator)

            groups = builder.udiv(count_v, ir.Constant(I64, sets))
            with cgutils.for_range(builder, groups) as loop:
                first = builder.mul(loop.index, ir.Constant(I64, sets))
                for offset, bank in enumerate(banks):
                    step(builder.add(first, ir.Constant(I64, offset)), bank)
            done = builder.mul(groups, ir.Constant(I64, sets))
            with cgutils.for_range(builder, builder.sub(count_v, done)) as loop:
                step(builder.add(done, loop.index), banks[0])
            for u in range(width):
                total = builder.load(banks[0][u])
                for bank in banks[1:]:
                    total = builder.fadd(total, builder.load(bank[u]), flags=["fast"])
                at = builder.gep(out_p, [builder.add(t_v, ir.Constant(I64, SEGMENT * u))])
                builder.store(total, builder.bitcast(at, V16F.as_pointer()), align=4)
            return context.get_dummy_value()

        return signature, codegen

    return tile


_tile4, _tile2, _tile1 = (_tile_intrinsic(w) for w in (4, 2, 1))


@intrinsic
def _decode_avx512(typingctx, masks, mask_start, segments, cols, at):
    """Write the column of every set bit of `segments` masks to cols[at:], branch-free (one
    register compress per segment; cols needs 16 entries of slack). Returns the new end."""
    signature = types.int64(masks, mask_start, segments, cols, at)

    def codegen(context, builder, sig, args):
        masks_a, mask_start_v, segments_v, cols_a, at_v = args
        masks_p = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=masks_a).data
        cols_p = cgutils.create_struct_proxy(sig.args[3])(context, builder, value=cols_a).data
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(V16I, [V16I, V16I, V16B]),
            "llvm.x86.avx512.mask.compress.v16i32",
        )  # fmt: skip
        popcount = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(I16, [I16]), "llvm.ctpop.i16"
        )
        lanes = ir.Constant(V16I, list(range(SEGMENT)))
        end_p = cgutils.alloca_once_value(builder, at_v)
        with cgutils.for_range(builder, segments_v) as loop:
            mask = builder.load(builder.gep(masks_p, [builder.add(mask_start_v, loop.index)]))
            first = builder.trunc(builder.mul(loop.index, ir.Constant(I64, SEGMENT)),
                                  ir.IntType(32))  # fmt: skip
            spread = builder.insert_element(ir.Constant(V16I, None), first,
                                            ir.Constant(ir.IntType(32), 0))  # fmt: skip
            spread = builder.shuffle_vector(spread, ir.Constant(V16I, None),
                                            ir.Constant(V16I, [0] * SEGMENT))  # fmt: skip
            packed = builder.call(compress, [builder.add(spread, lanes), ir.Constant(V16I, None),
                                             builder.bitcast(mask, V16B)])  # fmt: skip
            end = builder.load(end_p)
            target = builder.bitcast(builder.gep(cols_p, [end]), V16I.as_pointer())
            builder.store(packed, target, align=4)
            builder.store(builder.add(end, builder.zext(builder.call(popcount, [mask]), I64)),
                          end_p)  # fmt: skip
        return builder.load(end_p)

    return signature, codegen


@njit(fastmath=True, cache=True, inline="always")
def _decode_scalar(masks, mask_start, segments, cols, at):
    for s in range(segments):
        mask = np.int64(masks[mask_start + s]) & 0xFFFF
        while mask:
            cols[at] = s * SEGMENT + trailing_zeros(mask)
            at += 1
            mask &= mask - 1
    return at


def _spmm_kernels(decode):
    """The parallel and the serial SpMM for one column decoder. A task takes a block of rows
    (`bounds`, at most SPMM_BLOCK_NNZ non-zeros) and a range of 64-input tiles, decodes the
    block's columns once, then walks its tiles outermost and the block's rows inside, so the
    slice of xt one tile reads stays in cache across all those rows."""

    @njit(fastmath=True, cache=True, inline="always")
    def task(rowstart, masks, values, xt, out_t, first, last, t_begin, t_end, cols):
        segments = masks.shape[1]
        flat = masks.reshape(-1)
        n = xt.shape[1]
        end = 0
        for r in range(first, last):
            end = decode(flat, r * segments, segments, cols, end)
        t = t_begin
        while t < t_end:
            step = 64 if t + 64 <= n else (32 if t + 32 <= n else 16)
            begin = 0
            for r in range(first, last):
                count = rowstart[r + 1] - rowstart[r] if r + 1 < masks.shape[0] else (
                    values.shape[0] - SEGMENT - rowstart[r])  # fmt: skip
                view = cols[begin:]
                if step == 64:
                    _tile4(values, rowstart[r], view, count, xt, n, t, out_t[r])
                elif step == 32:
                    _tile2(values, rowstart[r], view, count, xt, n, t, out_t[r])
                else:
                    _tile1(values, rowstart[r], view, count, xt, n, t, out_t[r])
                begin += count
            t += step

    def parallel(rowstart, masks, values, xt, out_t, bounds, groups, width):
        tiles = -(-xt.shape[1] // 64)
        for job in prange((bounds.shape[0] - 1) * groups):
            block, group = job // groups, job % groups
            cols = np.empty(width, np.int32)
            t_begin = 64 * (group * tiles // groups)
            t_end = min(xt.shape[1], 64 * ((group + 1) * tiles // groups))
            task(rowstart, masks, values, xt, out_t, bounds[block], bounds[block + 1], t_begin,
                 t_end, cols)  # fmt: skip

    def serial(rowstart, masks, values, xt, out_t, bounds, groups, width):
        cols = np.empty(width, np.int32)
        for block in range(bounds.shape[0] - 1):
            task(rowstart, masks, values, xt, out_t, bounds[block], bounds[block + 1], 0,
                 xt.shape[1], cols)  # fmt: skip

    return (njit(parallel=True, fastmath=True, cache=True)(parallel),
            njit(fastmath=True, cache=True)(serial))  # fmt: skip


SPMM_BLOCK_NNZ = 16384  # non-zeros per SpMM row block: its decoded columns stay in L1/L2


@njit(cache=True)
def _spmm_blocks(rowstart, values, rows):
    """Row bounds of blocks of about SPMM_BLOCK_NNZ non-zeros (a new block wherever a row starts
    in the next multiple of it), and the column buffer the largest block needs (plus the
    decoder's 16 entries of slack)."""
    total = values.shape[0] - SEGMENT
    cuts = 1
    for r in range(1, rows):
        cuts += rowstart[r] // SPMM_BLOCK_NNZ != rowstart[r - 1] // SPMM_BLOCK_NNZ
    bounds = np.empty(cuts + 1, np.int64)
    bounds[0], bounds[cuts], at, widest = 0, rows, 1, 0
    for r in range(1, rows):
        if rowstart[r] // SPMM_BLOCK_NNZ != rowstart[r - 1] // SPMM_BLOCK_NNZ:
            bounds[at] = r
            at += 1
    for b in range(cuts):
        end = rowstart[bounds[b + 1]] if bounds[b + 1] < rows else total
        start = rowstart[bounds[b]] if rows else 0
        widest = max(widest, end - start)
    return bounds, widest + SEGMENT


_spmm_avx512, _spmm_serial_avx512 = _spmm_kernels(_decode_avx512)
_spmm_scalar, _spmm_serial_scalar = _spmm_kernels(_decode_scalar)


@njit(fastmath=True, cache=True)
def _transposed_padded(x, width):
    """x (N, K) as the (K, width) zero-padded x^T the SpMM tiles read."""
    n, k = x.shape
    xt = np.zeros((k, width), np.float32)
    for i in range(n):
        for j in range(k):
            xt[j, i] = x[i, j]
    return xt


@njit(fastmath=True, cache=True)
def _transpose_into(out_t, out):
    """out (N, M) = the first N columns of out_t (M, width), transposed."""
    for i in range(out.shape[0]):  # contiguous writes (a 4 KiB write stride thrashes L1 sets)
        for r in range(out_t.shape[0]):
            out[i, r] = out_t[r, i]


def spmm_t(rowstart, masks, values, xt: np.ndarray, avx512: bool | None = None) -> np.ndarray:
    """W xt for checked, C-contiguous arrays (`bitmask.matmul_t` checks them): (M, N)."""
    n = xt.shape[1]
    width = -(-n // SEGMENT) * SEGMENT
    if width == n:
        padded = xt
    else:  # the tiles read 16 inputs at a time
        padded = np.zeros((xt.shape[0], width), np.float32)
        padded[:, :n] = xt
    out = np.empty((masks.shape[0], width), np.float32)
    if avx512 is None:
        avx512 = has_avx512()
    small = (values.shape[0] - SEGMENT) * width < SPMM_SERIAL_BELOW
    bounds, buffer = _spmm_blocks(rowstart, values, masks.shape[0])
    blocks, tiles = bounds.shape[0] - 1, -(-width // 64)
    groups = max(1, min(tiles, -(-4 * numba.get_num_threads() // max(blocks, 1))))
    kernels = {(True, False): _spmm_avx512, (True, True): _spmm_serial_avx512,
               (False, False): _spmm_scalar, (False, True): _spmm_serial_scalar}  # fmt: skip
    kernels[avx512, small](rowstart, masks.view(np.uint16), values, padded, out, bounds, groups,
                           buffer)  # fmt: skip
    return out[:, :n]
