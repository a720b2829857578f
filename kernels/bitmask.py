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
"""

from __future__ import annotations

import functools
import os
import tempfile

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # its workers sleep, never spin


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
import numpy as np  # noqa: E402
from llvmlite import binding as llvm  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, prange, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

SEGMENT = 16
_F32, _I16, _I64 = ir.FloatType(), ir.IntType(16), ir.IntType(64)
_V16F, _V16B = ir.VectorType(_F32, 16), ir.VectorType(ir.IntType(1), 16)


@functools.cache
def has_avx512() -> bool:
    """Whether this CPU (as LLVM sees it) can run the expand kernel (asked once)."""
    features = llvm.get_host_cpu_features()
    return bool(features.get("avx512f"))


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
            spread = builder.call(expand, [builder.load(raw_p, align=4), zero,
                                           builder.bitcast(mask, _V16B)])  # fmt: skip
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


def matmul(rowstart, masks, values, x: np.ndarray, avx512: bool | None = None) -> np.ndarray:
    """x (N, K) float32 times the packed weight transposed: (N, M)."""
    rows, segments = masks.shape
    width = segments * SEGMENT
    if x.shape[1] == width and x.flags.c_contiguous:
        inputs = x
    else:  # the last segment reads 16 inputs: pad with zeros
        inputs = np.zeros((x.shape[0], width), np.float32)
        inputs[:, : x.shape[1]] = x
    out = np.empty((x.shape[0], rows), np.float32)
    if avx512 is None:
        avx512 = has_avx512()
    small = masks.size * x.shape[0] < SERIAL_BELOW
    kernels = {(True, False): _matvec_avx512, (True, True): _serial_avx512,
               (False, False): _matvec_scalar, (False, True): _serial_scalar}  # fmt: skip
    kernels[avx512, small](rowstart, masks.view(np.uint16), values, inputs, out)
    return out


def set_threads(count: int) -> None:
    """Use `count` numba threads (at most NUMBA_NUM_THREADS, fixed at import)."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))


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
