"""Measure every variant once (static figures, verification, kernels, accuracy), then time all
of them together in one interleaved run so machine drift hits every variant alike.

Latency and speedup come from the same samples: a variant's latency is the median over rounds
of its per-round median call time, its speedup is its baseline's latency / its own (so the
table's columns agree), and the 10th-90th percentile of per-round ratios (baseline round median
/ own round median, `measure/interleaved.py`) is the speedup's interval.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..data import load_dataset
from ..environment import collect_environment
from ..errors import SparsebenchError, first_line
from ..formats import get_exporter
from ..inputs import call
from ..load import LoadOptions
from ..measure.accuracy import measure_accuracy
from ..measure.interleaved import Comparison, time_interleaved
from ..measure.kernels import kernel_evidence
from ..measure.sanity import sanity_warnings
from ..measure.threads import fixed_threads
from ..progress import step
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
    inputs = variant.specs.synthetic().to(device)
    sparsity, macs = static_figures(model, inputs[:1])
    row.sparsity_pct, row.macs_m, row.effective_macs_m = (
        sparsity.sparsity_pct,
        macs.dense_m,
        macs.effective_m,
    )
    exporter = get_exporter(variant.format)
    check = compare_outputs(variant.reference.to(device), model,
                            verify_inputs(variant.specs), exporter.tolerance,
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
        row.converted_layers = row.kernels["converted_layers"]
        row.sparse_kernel_layers = row.kernels["sparse_layers"]
    if variant.format == "dense":
        _sanity(row, model, variant.specs, device)
    if config.data:
        dataset = load_dataset(config.data, config.data_split, image=config.image)
        row.top1 = measure_accuracy(model, dataset, variant.input_shape, device).top1
    return row


def _sanity(row: CompareRow, model, specs, device: str) -> None:
    """Empty layers and constant outputs of a checkpoint's dense model, on the verify batch."""
    with torch.inference_mode():
        outputs = call(model, verify_inputs(specs).to(device))
    row.warnings, flags = sanity_warnings(model, outputs)
    row.empty_layers, row.constant_outputs = flags["empty_layers"], flags["constant_outputs"]


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
            inputs = variant.specs.synthetic().to(config.device)
            calls[variant.key] = lambda m=variant.model, x=inputs: call(m, x)
    what = f"timing {len(calls)} variants interleaved ({config.timing.rounds} rounds)"
    with torch.inference_mode(), step(what):
        return time_interleaved(calls, config.timing, config.device)


def round_latency(timing: Comparison, key: str) -> tuple[float, float, float]:
    """Median, p10 and p90 (ms) over the rounds of each round's median call time of `key`.

    The latency column and the speedup come from these same per-round medians of the same
    interleaved run, so the table's speedup is its dense latency / its variant latency.
    """
    medians = sorted(statistics.median(block) for block in timing.rounds[key])
    return statistics.median(medians), percentile(medians, 10), percentile(medians, 90)


def speedup_stats(timing: Comparison, key: str, baseline: str) -> tuple[float, float, float]:
    """Speedup of `key` over `baseline`: the ratio of their `round_latency` medians, with the
    p10-p90 of per-round ratios (each round times both side by side) as its interval, widened to
    include the ratio itself when machine drift puts it outside."""
    ratio = round_latency(timing, baseline)[0] / round_latency(timing, key)[0]
    stats = timing.speedup(key, baseline)
    return ratio, min(stats.low, ratio), max(stats.high, ratio)


def _ratios(variants: list[Variant], rows: list[CompareRow], timing: Comparison) -> None:
    """Fill latency, speedup, theoretical speedup, size ratio and Δtop-1 of measured rows."""
    by_key = {v.key: r for v, r in zip(variants, rows, strict=True)}
    for variant, row in zip(variants, rows, strict=True):
        if variant.key not in timing.rounds:
            continue
        base = by_key[variant.baseline_key]
        row.samples = len(timing.samples(variant.key))
        row.latency_median_ms, row.latency_p10_ms, row.latency_p90_ms = round_latency(
            timing, variant.key
        )
        row.speedup, row.speedup_low, row.speedup_high = speedup_stats(
            timing, variant.key, variant.baseline_key
        )
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
    options = replace(options or LoadOptions(), device=config.device)
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
