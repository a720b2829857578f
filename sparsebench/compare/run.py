"""Measure every variant once (static figures, verification, kernels, accuracy), then time all
of them together in one interleaved run so machine drift hits every variant alike.

Speedup confidence: each variant's speedup is the median of per-round ratios (its baseline's
round median / its own round median) with the 10th-90th percentile of those ratios as the
interval; `measure/interleaved.py` computes them.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from ..data import load_dataset
from ..data.synthetic import synthetic_inputs
from ..environment import collect_environment
from ..errors import SparsebenchError, first_line
from ..formats import get_exporter
from ..load import LoadOptions
from ..measure.accuracy import measure_accuracy
from ..measure.interleaved import Comparison, time_interleaved
from ..measure.kernels import kernel_evidence
from ..measure.threads import fixed_threads
from ..results import percentile
from ..runtimes.base import static_figures
from ..verify import compare_outputs
from .advice import advise
from .config import CompareConfig
from .plan import Variant, close_variants, plan_variants, verify_inputs
from .results import CompareReport, CompareRow


def _static(variant: Variant, config: CompareConfig) -> CompareRow:
    """Sparsity, size, MACs, verification, kernel evidence and accuracy of one variant."""
    row = CompareRow(variant.checkpoint, variant.model_name, variant.format, variant.runtime,
                     variant.input_shape[0], unavailable=variant.unavailable,
                     size_mb=variant.stored_mb, size_source=variant.size_source)  # fmt: skip
    if variant.unavailable:
        return row
    model, device = variant.model, config.device
    inputs = synthetic_inputs(variant.input_shape).to(device)
    sparsity, macs = static_figures(model, inputs[:1])
    row.sparsity_pct, row.macs_m, row.effective_macs_m = (
        sparsity.sparsity_pct,
        macs.dense_m,
        macs.effective_m,
    )
    exporter = get_exporter(variant.format)
    check = compare_outputs(variant.reference.to(device), model,
                            verify_inputs(variant.input_shape), exporter.tolerance,
                            "synthetic", device)  # fmt: skip
    row.verify_err = check.max_rel_err
    if not check.passed:
        row.unavailable = (
            f"failed verification: max relative error {check.max_rel_err:.1e} "
            f"> {check.tolerance:.0e}"
        )
        return row
    if exporter.kernel_evidence:
        row.kernels = kernel_evidence(model, inputs, variant.converted, exporter.kernel_evidence,
                                      device)  # fmt: skip
        row.sparse_kernel_ran = row.kernels["sparse_kernel_ran"]
    if config.data:
        dataset = load_dataset(config.data, config.data_split)
        row.top1 = measure_accuracy(model, dataset, variant.input_shape, device).top1
    return row


def _static_or_unavailable(variant: Variant, config: CompareConfig) -> CompareRow:
    """`_static`, or the variant's row marked unavailable with the error that stopped it."""
    try:
        return _static(variant, config)
    except Exception as exc:  # one variant failing must not drop every other result
        detail = first_line(exc, with_type=not isinstance(exc, SparsebenchError))
        row = CompareRow(variant.checkpoint, variant.model_name, variant.format,
                         variant.runtime, variant.input_shape[0])  # fmt: skip
        row.unavailable = f"failed: {detail}"
        return row


def _time(variants: list[Variant], rows: list[CompareRow], config: CompareConfig) -> Comparison:
    calls = {}
    for variant, row in zip(variants, rows, strict=True):
        if row.unavailable is None:
            inputs = synthetic_inputs(variant.input_shape).to(config.device)
            calls[variant.key] = lambda m=variant.model, x=inputs: m(x)
    with torch.inference_mode():
        return time_interleaved(calls, config.timing, config.device)


def _ratios(variants: list[Variant], rows: list[CompareRow], timing: Comparison) -> None:
    """Fill latency, speedup, theoretical speedup, size ratio and Δtop-1 of measured rows."""
    by_key = {v.key: r for v, r in zip(variants, rows, strict=True)}
    for variant, row in zip(variants, rows, strict=True):
        if variant.key not in timing.rounds:
            continue
        base = by_key[variant.baseline_key]
        samples = sorted(timing.samples(variant.key))
        row.samples = len(samples)
        row.latency_median_ms = timing.median_ms(variant.key)
        row.latency_p10_ms, row.latency_p90_ms = percentile(samples, 10), percentile(samples, 90)
        stats = timing.speedup(variant.key, variant.baseline_key)
        row.speedup, row.speedup_low, row.speedup_high = stats.median, stats.low, stats.high
        if row.effective_macs_m:
            row.theoretical_speedup = base.macs_m / row.effective_macs_m
        if row.size_mb:
            row.size_ratio = base.size_mb / row.size_mb
        if row.top1 is not None and base.top1 is not None:
            row.delta_top1 = row.top1 - base.top1


def measure_variants(variants: list[Variant], config: CompareConfig) -> list[CompareRow]:
    """Rows for planned variants: static figures first, then one interleaved timing run."""
    rows = [_static_or_unavailable(variant, config) for variant in variants]
    baselines = {v.key for v, r in zip(variants, rows, strict=True) if r.unavailable is None}
    for variant, row in zip(variants, rows, strict=True):
        if row.unavailable is None and variant.baseline_key not in baselines:
            row.unavailable = "its dense baseline could not be measured"
    _ratios(variants, rows, _time(variants, rows, config))
    return rows


def compare(
    paths: list[str | Path], config: CompareConfig | None = None,
    options: LoadOptions | None = None,
) -> CompareReport:  # fmt: skip
    """Convert each checkpoint to each format, measure all variants and advise."""
    config = config or CompareConfig()
    options = LoadOptions(**{**asdict(options or LoadOptions()), "device": config.device})
    with fixed_threads(config.threads) as threads:
        with tempfile.TemporaryDirectory(prefix="sparsebench-compare-") as folder:
            variants = plan_variants(list(paths), config, options, Path(folder))
            try:
                rows = measure_variants(variants, config)
            finally:
                close_variants(variants)
    settings = asdict(config)
    settings["speedup_interval"] = "p10-p90 of per-round ratios of one interleaved run"
    settings["torch_threads"] = threads
    return CompareReport(collect_environment(config.device), settings, rows,
                         advise(rows, config.max_acc_drop))  # fmt: skip
