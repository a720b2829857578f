"""Kernel benchmark: sparse weights x dense activations against the best dense runtime and the
memory limit, in one interleaved run per workload (issue 12's table).

A workload is a stack of distinct square Linear layers, magnitude-free random sparsity, at a
batch size. The stack holds enough layers that even the smallest candidate's weights exceed
twice the last-level cache (read from the system), so no candidate times a cache-resident
copy. Candidates: dense torch, dense ONNX Runtime (its pool told not to spin), torch CSR and
sparsebench's bitmask kernels; each is verified against dense torch before it is timed, then
all are timed in rotating rounds (`time_interleaved`). Dense torch is also timed alone first,
so the table shows whether interleaving slowed the baseline.

Every row also carries the bytes its weights move, the machine's measured read bandwidth, the
time that bandwidth implies (the batch-1 bound) and the achieved fraction of it.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field

import torch

from ..errors import SparsebenchError, first_line
from ..measure.interleaved import TimingConfig, time_interleaved
from ..measure.threads import fixed_threads

LLC_FALLBACK = 32 * 2**20


@dataclass(frozen=True)
class KernelWorkload:
    size: int = 4096
    batch: int = 1
    sparsity: float = 0.8
    layers: int = 0  # 0: enough that the smallest candidate exceeds twice the cache
    int8: bool = False  # add torch's int8 block-sparse Linear as a reference row (slow here)

    @property
    def label(self) -> str:
        return f"Linear {self.size}x{self.size}, batch {self.batch}, {self.sparsity:.0%}"


DEFAULT_WORKLOADS = (
    KernelWorkload(4096, 1, 0.5),
    KernelWorkload(4096, 1, 0.8, int8=True),
    KernelWorkload(4096, 1, 0.9),
    KernelWorkload(4096, 1, 0.95),
    KernelWorkload(4096, 32, 0.8),
)


@dataclass
class KernelRow:
    workload: str
    candidate: str
    layers: int = 0
    median_ms: float = 0.0
    low_ms: float = 0.0
    high_ms: float = 0.0
    speedup: float = 0.0  # over the faster dense runtime, median of per-round ratios
    speedup_low: float = 0.0
    speedup_high: float = 0.0
    weight_bytes: int = 0
    bound_ms: float = 0.0
    max_abs_err: float = 0.0
    unavailable: str = ""


@dataclass
class KernelReport:
    rows: list[KernelRow] = field(default_factory=list)
    bandwidth_gbs: float = 0.0
    llc_bytes: int = 0
    llc_source: str = ""
    threads: int = 1
    dense_alone: dict[str, float] = field(default_factory=dict)  # workload -> median ms


def last_level_cache() -> tuple[int, str]:
    """Bytes of the largest CPU cache the system reports, and where the number came from."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    sizes = []
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        try:
            with open(os.path.join(root, entry, "size")) as handle:
                text = handle.read().strip()
            sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
        except (OSError, ValueError, IndexError):
            continue
    if sizes:
        return max(sizes), root
    return LLC_FALLBACK, "not reported by the system: assumed 32 MiB"


def read_bandwidth(threads: int, nbytes: int, repeats: int = 7) -> float:
    """Median GB/s of `torch.sum` over a float32 buffer of `nbytes` (larger than the cache)."""
    buffer = torch.ones(nbytes // 4)
    times = []
    with fixed_threads(threads):
        buffer.sum()
        for _ in range(repeats):
            start = time.perf_counter()
            buffer.sum()
            times.append(time.perf_counter() - start)
    return nbytes / statistics.median(times) / 1e9


def _weights(workload: KernelWorkload, layers: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        weight = torch.randn(workload.size, workload.size, generator=generator)
        keep = torch.rand(workload.size, workload.size, generator=generator) >= workload.sparsity
        out.append(weight * keep / math.sqrt(workload.size * (1 - workload.sparsity)))
    return out


def _bitmask_bytes(size: int, nnz: int) -> int:
    return 4 * nnz + 2 * size * -(-size // 16) + 8 * size


def _layers_needed(workload: KernelWorkload, llc: int) -> int:
    """Layers so that the smallest candidate (the bitmask) still exceeds twice the cache."""
    nnz = int(workload.size**2 * (1 - workload.sparsity))
    return max(2, math.ceil(2 * llc / _bitmask_bytes(workload.size, nnz)) + 1)


def _ort_stack(weights: list[torch.Tensor], batch: int, threads: int):
    """An ONNX Runtime session running the same stack (MatMul by W^T), or the reason it can't."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        return None, f"onnxruntime not installed ({first_line(exc)})"
    size = weights[0].shape[0]
    nodes, inits, previous = [], [], "x"
    for index, weight in enumerate(weights):
        inits.append(numpy_helper.from_array(weight.t().contiguous().numpy(), f"w{index}"))
        nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [f"y{index}"]))
        previous = f"y{index}"
    graph = helper.make_graph(
        nodes,
        "stack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, size])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [batch, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session, ""


def _candidates(weights, x, threads, int8: bool):
    """name -> a callable returning the stack's output, or name -> why it cannot run here."""
    found: dict[str, object] = {}
    found["dense torch"] = lambda: _chain(x, weights, torch.nn.functional.linear)
    session, reason = _ort_stack(weights, x.shape[0], threads)
    if session is None:
        found["dense onnxruntime"] = reason
    else:
        feed = {"x": x.numpy()}
        found["dense onnxruntime"] = lambda: torch.from_numpy(session.run(None, feed)[0])
    csr = [w.to_sparse_csr() for w in weights]
    found["torch csr"] = lambda: _chain(x, csr, lambda a, w: torch.sparse.mm(w, a.t()).t())
    try:
        from ..formats.bitmask import _kernels

        kernels = _kernels()
    except SparsebenchError as exc:
        found["bitmask (sparsebench)"] = str(exc)
    else:
        kernels.bitmask.set_threads(threads)
        packed = [kernels.pack_linear(w) for w in weights]
        size = weights[0].shape[1]

        def bitmask_layer(a, p):
            return kernels.bitmask_linear(a, p["rowstart"], p["masks"], p["values"], None, size)

        found["bitmask (sparsebench)"] = lambda: _chain(x, packed, bitmask_layer)
    if int8:
        found[INT8] = _int8_stack(weights, x)
    return found


INT8 = "int8 1x4 block-sparse (torch.ao, reference)"
INT8_TOLERANCE = 0.05  # of max |y|: int8 weights, activations and outputs through the stack


def _int8_stack(weights, x):
    """torch's int8 block-sparse Linear (FBGEMM, 1x4 blocks) over the same weights, outputs
    requantized per layer with scales calibrated on this input; or why it cannot run here."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return "torch was built without the FBGEMM engine its sparse int8 Linear needs"
    import warnings

    from torch.ao.nn.sparse.quantized import Linear

    torch.backends.quantized.engine = "fbgemm"
    layers, y = [], x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantized tensors
        for weight in weights:
            y = torch.nn.functional.linear(y, weight)
            layer = Linear(weight.shape[1], weight.shape[0], 1, 4, bias=False)
            scale = max(float(weight.abs().max()), 1e-12) / 127
            layer.set_weight_bias(torch.quantize_per_tensor(weight, scale, 0, torch.qint8), None,
                                  1, 4)  # fmt: skip
            layer.scale, layer.zero_point = max(float(y.abs().max()), 1e-12) / 127, 128
            layers.append(layer)
        x_scale = max(float(x.abs().max()), 1e-12) / 127

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q = torch.quantize_per_tensor(x, x_scale, 128, torch.quint8)
                return _chain(q, layers, lambda a, layer: layer(a)).dequantize()

        try:
            run()
        except RuntimeError as exc:
            return f"torch.ao sparse int8 Linear failed here: {first_line(exc)}"
    return run


def _chain(x, layers, apply):
    for layer in layers:
        x = apply(x, layer)
    return x


def _bytes(name: str, weights: list[torch.Tensor]) -> int:
    total = 0
    for weight in weights:
        nnz = int(torch.count_nonzero(weight))
        rows = weight.shape[0]
        if name.startswith("dense"):
            total += 4 * weight.numel()
        elif name == "torch csr":
            total += 12 * nnz + 8 * (rows + 1)  # float32 values, int64 columns and row pointers
        elif name == INT8:  # int8 values of each non-empty 1x4 block, an int32 index per block
            blocks = int(torch.count_nonzero(weight.reshape(rows, -1, 4).abs().sum(-1)))
            total += 8 * blocks + 4 * (rows + 1)
        else:
            total += _bitmask_bytes(rows, nnz)
    return total


def run_workload(workload: KernelWorkload, timing: TimingConfig, threads: int, llc: int,
                 bandwidth: float) -> tuple[list[KernelRow], float]:  # fmt: skip
    """Rows for one workload, and dense torch's median time alone (before interleaving)."""
    layers = workload.layers or _layers_needed(workload, llc)
    weights = _weights(workload, layers, seed=0)
    x = torch.randn(workload.batch, workload.size, generator=torch.Generator().manual_seed(1))
    rows, variants = [], {}
    with fixed_threads(threads), torch.inference_mode():
        candidates = _candidates(weights, x, threads, workload.int8)
        reference = candidates["dense torch"]()
        errors = {}
        for name, candidate in candidates.items():
            if isinstance(candidate, str):
                rows.append(KernelRow(workload.label, name, layers, unavailable=candidate))
                continue
            got = candidate()
            error = float((got - reference).abs().max())
            scale = INT8_TOLERANCE if name == INT8 else 1e-4  # else fp32 sums in another order
            tolerance = scale * float(reference.abs().max()) + 1e-5
            if not math.isfinite(error) or error > tolerance:
                reason = f"failed verification: {error:.2e} > {tolerance:.2e}"
                rows.append(KernelRow(workload.label, name, layers, unavailable=reason))
                continue
            errors[name] = error
            variants[name] = candidate
        alone = time_interleaved({"dense torch": variants["dense torch"]}, timing)
        comparison = time_interleaved(variants, timing)
    dense = [name for name in variants if name.startswith("dense")]
    for name in variants:
        best = [comparison.speedup(name, base) for base in dense]
        stats = min(best, key=lambda s: s.median)  # over the faster dense runtime
        samples = sorted(comparison.samples(name))
        nbytes = _bytes(name, weights)
        rows.append(KernelRow(
            workload.label, name, layers, comparison.median_ms(name),
            samples[len(samples) // 10], samples[(9 * len(samples)) // 10],
            stats.median, stats.low, stats.high, nbytes, nbytes / bandwidth * 1e3, errors[name],
        ))  # fmt: skip
    return rows, alone.median_ms("dense torch")


def run_kernels(workloads=DEFAULT_WORKLOADS, timing: TimingConfig | None = None,
                threads: int = 2, progress=None) -> KernelReport:  # fmt: skip
    timing = timing or TimingConfig(rounds=10, block_seconds=0.1, block_iters=3)
    llc, source = last_level_cache()
    bandwidth = read_bandwidth(threads, max(4 * llc, 256 * 2**20))
    report = KernelReport(bandwidth_gbs=bandwidth, llc_bytes=llc, llc_source=source,
                          threads=threads)  # fmt: skip
    for workload in workloads:
        if progress:
            progress(workload.label)
        rows, alone = run_workload(workload, timing, threads, llc, bandwidth * 1e9)
        report.rows.extend(rows)
        report.dense_alone[workload.label] = alone
    return report


def render_kernels(report: KernelReport) -> str:
    lines = [
        f"Threads: {report.threads}. Read bandwidth (torch.sum over "
        f"{max(4 * report.llc_bytes, 256 * 2**20) / 2**20:.0f} MiB): "
        f"{report.bandwidth_gbs:.1f} GB/s. Last-level cache: {report.llc_bytes / 2**20:.0f} MiB "
        f"({report.llc_source}).",
        "",
        "| workload | candidate | layers | median ms (p10-p90) | speedup over faster dense "
        "(p10-p90) | weights MiB | bandwidth bound ms | % of bound | max abs err |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        if row.unavailable:
            lines.append(f"| {row.workload} | {row.candidate} | {row.layers} | unavailable: "
                         f"{row.unavailable} | | | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {row.workload} | {row.candidate} | {row.layers} | {row.median_ms:.2f} "
            f"({row.low_ms:.2f}-{row.high_ms:.2f}) | x{row.speedup:.2f} ({row.speedup_low:.2f}-"
            f"{row.speedup_high:.2f}) | {row.weight_bytes / 2**20:.1f} | {row.bound_ms:.2f} | "
            f"{100 * row.bound_ms / row.median_ms:.0f} % | {row.max_abs_err:.1e} |"
        )
    lines += ["", "Dense torch alone vs interleaved (median ms): the pools do not fight if equal.",
              "", "| workload | alone | interleaved |", "|---|---|---|"]  # fmt: skip
    for label, alone in report.dense_alone.items():
        mixed = next(r for r in report.rows if r.workload == label and r.candidate == "dense torch")
        lines.append(f"| {label} | {alone:.2f} | {mixed.median_ms:.2f} |")
    return "\n".join(lines) + "\n"
