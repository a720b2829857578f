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
work is compute-bound instead, and `matmul` switches to an SpMM over the transposed inputs: for
each non-zero w of row r (its column from the mask's set bits), `out[r, :] += w * xt[col, :]`,
a contiguous multiply-add over the N inputs that LLVM vectorises, so no lane is spent on zeros.
"""

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
import numpy as np  # noqa: E402
from llvmlite import binding as llvm  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, prange, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.cpython.unsafe.numbers import trailing_zeros  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

SEGMENT = 16
_F32, _I16, _I64 = ir.FloatType(), ir.IntType(16), ir.IntType(64)
_V16F, _V16B = ir.VectorType(_F32, 16), ir.VectorType(ir.IntType(1), 16)


@functools.cache
def has_avx512() -> bool:
    """Whether the CPU numba compiles for can run the expand kernel (asked once): the host's
    features, unless NUMBA_CPU_NAME names another target (then NUMBA_CPU_FEATURES decides)."""
    if numba.config.CPU_NAME not in (None, "", "host"):
        return "+avx512f" in (numba.config.CPU_FEATURES or "").split(",")
    return bool(llvm.get_host_cpu_features().get("avx512f"))


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
            zero = ir.Constant(_V16F, None)
            banks = [[cgutils.alloca_once_value(builder, zero) for _ in range(width)]
                     for _ in range(sets)]  # fmt: skip
            broadcast = ir.Constant(ir.VectorType(ir.IntType(32), SEGMENT), [0] * SEGMENT)

            def step(q, bank):
                weight = builder.load(builder.gep(values_p, [builder.add(start_v, q)]))
                spread = builder.insert_element(zero, weight, ir.Constant(ir.IntType(32), 0))
                spread = builder.shuffle_vector(spread, zero, broadcast)
                column = builder.sext(builder.load(builder.gep(cols_p, [q])), _I64)
                row = builder.add(builder.mul(column, stride_v), t_v)
                for u, accumulator in enumerate(bank):
                    at = builder.gep(xt_p, [builder.add(row, ir.Constant(_I64, SEGMENT * u))])
                    inputs = builder.load(builder.bitcast(at, _V16F.as_pointer()), align=4)
                    product = builder.fmul(spread, inputs, flags=["fast"])
                    total = builder.fadd(builder.load(accumulator), product, flags=["fast"])
                    builder.store(total, accumulator)

            groups = builder.udiv(count_v, ir.Constant(_I64, sets))
            with cgutils.for_range(builder, groups) as loop:
                first = builder.mul(loop.index, ir.Constant(_I64, sets))
                for offset, bank in enumerate(banks):
                    step(builder.add(first, ir.Constant(_I64, offset)), bank)
            done = builder.mul(groups, ir.Constant(_I64, sets))
            with cgutils.for_range(builder, builder.sub(count_v, done)) as loop:
                step(builder.add(done, loop.index), banks[0])
            for u in range(width):
                total = builder.load(banks[0][u])
                for bank in banks[1:]:
                    total = builder.fadd(total, builder.load(bank[u]), flags=["fast"])
                at = builder.gep(out_p, [builder.add(t_v, ir.Constant(_I64, SEGMENT * u))])
                builder.store(total, builder.bitcast(at, _V16F.as_pointer()), align=4)
            return context.get_dummy_value()

        return signature, codegen

    return tile


_tile4, _tile2, _tile1 = (_tile_intrinsic(w) for w in (4, 2, 1))
_V16I = ir.VectorType(ir.IntType(32), SEGMENT)


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
            builder.module, ir.FunctionType(_V16I, [_V16I, _V16I, _V16B]),
            "llvm.x86.avx512.mask.compress.v16i32",
        )  # fmt: skip
        popcount = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I16, [_I16]), "llvm.ctpop.i16"
        )
        lanes = ir.Constant(_V16I, list(range(SEGMENT)))
        end_p = cgutils.alloca_once_value(builder, at_v)
        with cgutils.for_range(builder, segments_v) as loop:
            mask = builder.load(builder.gep(masks_p, [builder.add(mask_start_v, loop.index)]))
            first = builder.trunc(builder.mul(loop.index, ir.Constant(_I64, SEGMENT)),
                                  ir.IntType(32))  # fmt: skip
            spread = builder.insert_element(ir.Constant(_V16I, None), first,
                                            ir.Constant(ir.IntType(32), 0))  # fmt: skip
            spread = builder.shuffle_vector(spread, ir.Constant(_V16I, None),
                                            ir.Constant(_V16I, [0] * SEGMENT))  # fmt: skip
            packed = builder.call(compress, [builder.add(spread, lanes), ir.Constant(_V16I, None),
                                             builder.bitcast(mask, _V16B)])  # fmt: skip
            end = builder.load(end_p)
            target = builder.bitcast(builder.gep(cols_p, [end]), _V16I.as_pointer())
            builder.store(packed, target, align=4)
            builder.store(builder.add(end, builder.zext(builder.call(popcount, [mask]), _I64)),
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


SPMM_ROWS = 8  # rows per parallel task of the SpMM: their columns are decoded once, together


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
SPMM_SERIAL_BELOW = 1 << 20  # multiply-adds under which one thread beats a parallel region
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
        _transpose_into(matmul_t(rowstart, masks, values, xt, True, avx512), out)
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
    rowstart, masks, values, xt = _checked(rowstart, masks, values, xt, 0)
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
