"""Sparse fp32 weights as a bitmask + packed values, times dense activations (numba).

Layout of a weight of shape (M, K), with S = ceil(K / 16) segments of 16 columns per row:
- `masks` (M, S) uint16 (stored as int16): bit i of a segment says column 16 s + i is non-zero;
- `rowstart` (M,) int64: where each row's packed values begin in `values`;
- `values` (nnz + 16,) float32: the non-zeros row by row, then 16 zeros of padding (a step
  loads 16 values at once).

On an AVX-512 CPU each segment is one 16-value load, one register expand by the mask
(`llvm.x86.avx512.mask.expand`, emitted through a numba intrinsic) and one multiply-add with
the 16 contiguous inputs, four segments per step with four accumulators: no gathers, so the
work per segment does not grow with density (docs/kernels-research.md has the measurements
that chose it). Elsewhere a scalar loop over the set bits computes the same result.

With many input rows (batch N, a transformer's sequence, a convolution's output positions) the
work is compute-bound instead, and `matmul` switches to the SpMM of spmm.py over the transposed
inputs: for each non-zero w of row r, `out[r, :] += w * xt[col, :]`, so no lane is spent on
zeros.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._numba import F32 as _F32
from ._numba import I16 as _I16
from ._numba import I64 as _I64
from ._numba import SEGMENT, has_avx512, set_threads  # noqa: F401 - set_threads: public API
from ._numba import V16B as _V16B
from ._numba import V16F as _V16F
from .spmm import SPMM_BLOCK_NNZ, _transpose_into, _transposed_padded, spmm_t  # noqa: F401


def _checked(rowstart, masks, values, x, rows_axis: int):
    """The packed arrays and x as the kernels read them (C-contiguous, their dtypes), after
    checking that x holds the K inputs the masks' segments can mark (no read past it)."""
    segments = masks.shape[1]
    inputs = x.shape[rows_axis]
    if not (segments - 1) * SEGMENT < inputs <= segments * SEGMENT and (segments or inputs):
        raise ValueError(f"x has {inputs} inputs; the packed weight takes "
                         f"{(segments - 1) * SEGMENT + 1}-{segments * SEGMENT}")  # fmt: skip
    contiguous = np.ascontiguousarray
    return (contiguous(rowstart, np.int64), contiguous(masks, np.int16),
            contiguous(values, np.float32), contiguous(x, np.float32))  # fmt: skip


@intrinsic
def _row_dot(typingctx, values, start, masks, mask_start, segments, x):
    """sum over the row's segments of expand(values, mask) * x[16 s : 16 s + 16]."""
    signature = types.float32(values, start, masks, mask_start, segments, x)

    def codegen(context, builder, sig, args):
        values_a, start_v, masks_a, mask_start_v, segments_v, x_a = args

        def data(index, value):
            return cgutils.create_struct_proxy(sig.args[index])(context, builder, value=value).data

        values_p, masks_p, x_p = data(0, values_a), data(2, masks_a), data(5, x_a)
        module = builder.module
        expand = cgutils.get_or_insert_function(
            module, ir.FunctionType(_V16F, [_V16F, _V16F, _V16B]),
            "llvm.x86.avx512.mask.expand.v16f32",
        )  # fmt: skip
        popcount = cgutils.get_or_insert_function(
            module, ir.FunctionType(_I16, [_I16]), "llvm.ctpop.i16"
        )
        zero = ir.Constant(_V16F, None)
        accumulators = [cgutils.alloca_once_value(builder, zero) for _ in range(4)]
        offset_p = cgutils.alloca_once_value(builder, start_v)
        index_p = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))

        def segment(index, offset, mask, accumulator):
            raw_p = builder.bitcast(builder.gep(values_p, [offset]), _V16F.as_pointer())
            # An empty asm pins the 16 values in a register: LLVM would otherwise fold the load
            # into a memory-source vexpandps, which Zen 4 runs several times slower.
            raw = builder.asm(ir.FunctionType(_V16F, [_V16F]), "", "=v,0",
                              [builder.load(raw_p, align=4)], False)  # fmt: skip
            spread = builder.call(expand, [raw, zero, builder.bitcast(mask, _V16B)])
            x_at = builder.gep(x_p, [builder.mul(index, ir.Constant(_I64, SEGMENT))])
            inputs = builder.load(builder.bitcast(x_at, _V16F.as_pointer()), align=4)
            product = builder.fmul(spread, inputs, flags=["fast"])
            total = builder.fadd(builder.load(accumulator), product, flags=["fast"])
            builder.store(total, accumulator)

        def count(mask):
            return builder.zext(builder.call(popcount, [mask]), _I64)

        quads = builder.udiv(segments_v, ir.Constant(_I64, 4))
        with cgutils.for_range(builder, quads) as loop:
            first = builder.mul(loop.index, ir.Constant(_I64, 4))
            indices = [builder.add(first, ir.Constant(_I64, u)) for u in range(4)]
            masks = [builder.load(builder.gep(masks_p, [builder.add(mask_start_v, i)]))
                     for i in indices]  # fmt: skip
            offsets = [builder.load(offset_p)]
            for mask in masks[:3]:
                offsets.append(builder.add(offsets[-1], count(mask)))
            builder.store(builder.add(offsets[-1], count(masks[3])), offset_p)
            for i, offset, mask, accumulator in zip(indices, offsets, masks, accumulators,
                                                    strict=True):  # fmt: skip
                segment(i, offset, mask, accumulator)
        builder.store(builder.mul(quads, ir.Constant(_I64, 4)), index_p)
        rest = builder.sub(segments_v, builder.load(index_p))
        with cgutils.for_range(builder, rest) as loop:
            index = builder.add(builder.load(index_p), loop.index)
            mask = builder.load(builder.gep(masks_p, [builder.add(mask_start_v, index)]))
            offset = builder.load(offset_p)
            segment(index, offset, mask, accumulators[0])
            builder.store(builder.add(offset, count(mask)), offset_p)
        loaded = [builder.load(a) for a in accumulators]
        vector = builder.fadd(builder.fadd(loaded[0], loaded[1], flags=["fast"]),
                              builder.fadd(loaded[2], loaded[3], flags=["fast"]),
                              flags=["fast"])  # fmt: skip
        result = ir.Constant(_F32, 0.0)
        for lane in range(SEGMENT):
            element = builder.extract_element(vector, ir.Constant(ir.IntType(32), lane))
            result = builder.fadd(result, element, flags=["fast"])
        return result

    return signature, codegen


def _avx512_rows(rowstart, masks, values, x, out, r):
    segments = masks.shape[1]
    flat = masks.reshape(-1)
    for n in range(x.shape[0]):
        out[n, r] = _row_dot(values, rowstart[r], flat, r * segments, segments, x[n])


def _scalar_rows(rowstart, masks, values, x, out, r):
    for n in range(x.shape[0]):
        acc = np.float32(0.0)
        k = rowstart[r]
        for s in range(masks.shape[1]):
            mask = np.int64(masks[r, s]) & 0xFFFF
            bit = 0
            while mask:
                if mask & 1:
                    acc += values[k] * x[n, s * SEGMENT + bit]
                    k += 1
                mask >>= 1
                bit += 1
        out[n, r] = acc


def _kernels(row):
    """The parallel and the serial kernel over rows for one row body."""
    body = njit(fastmath=True, cache=True, inline="always")(row)

    def parallel(rowstart, masks, values, x, out):
        for r in prange(masks.shape[0]):
            body(rowstart, masks, values, x, out, r)

    def serial(rowstart, masks, values, x, out):
        for r in range(masks.shape[0]):
            body(rowstart, masks, values, x, out, r)

    return (njit(parallel=True, fastmath=True, cache=True)(parallel),
            njit(fastmath=True, cache=True)(serial))  # fmt: skip


_matvec_avx512, _serial_avx512 = _kernels(_avx512_rows)
_matvec_scalar, _serial_scalar = _kernels(_scalar_rows)
SERIAL_BELOW = 65536  # mask segments x batch rows under which one thread beats a parallel region
SPMM_FROM = 3  # input rows from which the SpMM beats one expand pass per row (measured)


def pack(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rowstart, masks, values) of a float32 (M, K) weight (see the module docstring)."""
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    rows, cols = weight.shape
    segments = -(-cols // SEGMENT)
    padded = np.zeros((rows, segments * SEGMENT), np.float32)
    padded[:, :cols] = weight
    present = padded != 0
    bits = present.reshape(rows, segments, SEGMENT).astype(np.int64)
    masks = (bits << np.arange(SEGMENT)).sum(-1).astype(np.uint16).view(np.int16)
    counts = present.sum(1)
    rowstart = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    values = np.concatenate([padded[present], np.zeros(SEGMENT, np.float32)])
    return rowstart, masks, values


def matmul(
    rowstart, masks, values, x: np.ndarray, avx512: bool | None = None, spmm: bool | None = None
) -> np.ndarray:
    """x (N, K) float32 times the packed weight transposed: (N, M). `spmm` forces the batch-N
    kernel on or off (default: from SPMM_FROM rows)."""
    rowstart, masks, values, x = _checked(rowstart, masks, values, x, 1)
    if avx512 is None:
        avx512 = has_avx512()
    if spmm if spmm is not None else x.shape[0] >= SPMM_FROM:
        width = -(-x.shape[0] // SEGMENT) * SEGMENT
        xt = _transposed_padded(x, width)
        out = np.empty((x.shape[0], masks.shape[0]), np.float32)
        _transpose_into(spmm_t(rowstart, masks, values, xt, avx512), out)  # x is checked
        return out
    rows, segments = masks.shape
    width = segments * SEGMENT
    if x.shape[1] == width:
        inputs = x
    else:  # the last segment reads 16 inputs: pad with zeros
        inputs = np.zeros((x.shape[0], width), np.float32)
        inputs[:, : x.shape[1]] = x
    out = np.empty((x.shape[0], rows), np.float32)
    small = masks.size * x.shape[0] < SERIAL_BELOW
    kernels = {(True, False): _matvec_avx512, (True, True): _serial_avx512,
               (False, False): _matvec_scalar, (False, True): _serial_scalar}  # fmt: skip
    kernels[avx512, small](rowstart, masks.view(np.uint16), values, inputs, out)
    return out


def matmul_t(
    rowstart, masks, values, xt: np.ndarray, spmm: bool | None = None, avx512: bool | None = None
) -> np.ndarray:
    """The packed weight times xt (K, N) float32: (M, N), the layout of a convolution's output
    from its unfolded input. Below SPMM_FROM columns it runs `matmul` on xt transposed."""
    if not (spmm if spmm is not None else xt.shape[1] >= SPMM_FROM):
        return np.ascontiguousarray(matmul(rowstart, masks, values, xt.T, avx512, False).T)
    return spmm_t(*_checked(rowstart, masks, values, xt, 0), avx512)


def check_packed(rowstart, masks, values, in_features: int) -> None:
    """Raise ValueError unless the packed arrays are consistent, so the kernel cannot read
    outside `values` or `x`: run it on anything read from a file before the first call."""
    rowstart, masks, values = np.asarray(rowstart), np.asarray(masks), np.asarray(values)
    if rowstart.dtype != np.int64 or masks.dtype != np.int16 or values.dtype != np.float32:
        raise ValueError("packed bitmask arrays need int64 rowstart, int16 masks, float32 values")
    if masks.ndim != 2 or rowstart.shape != (masks.shape[0],) or values.ndim != 1:
        raise ValueError("packed bitmask arrays have inconsistent shapes")
    if (
        not 0 < in_features <= masks.shape[1] * SEGMENT
        or in_features <= (masks.shape[1] - 1) * SEGMENT
    ):
        raise ValueError(f"masks of {masks.shape[1]} segments do not fit {in_features} inputs")
    bits = np.unpackbits(masks.view(np.uint8).reshape(*masks.shape, 2), axis=-1, bitorder="little")
    counts = bits.reshape(masks.shape[0], -1).sum(1, dtype=np.int64)
    if bits.reshape(masks.shape[0], -1)[:, in_features:].any():
        raise ValueError("a mask marks a column beyond in_features")
    expected = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if not np.array_equal(rowstart, expected):
        raise ValueError("rowstart does not match the masks' non-zero counts")
    if values.shape[0] != int(counts.sum()) + SEGMENT:
        raise ValueError("values do not hold one entry per mask bit plus the 16-value padding")
