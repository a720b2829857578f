"""What the commands print says what was measured: no "1.00x slower", a latency column that
agrees with the speedup, kernel counts, rounded percentages, a time-budget progress bar."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console
from torch import nn

from sparsebench.compare import CompareReport, CompareRow
from sparsebench.compare.advice import advise, verdict
from sparsebench.compare.plan import Variant
from sparsebench.compare.render import kernel_text, print_compare, render_csv, render_markdown
from sparsebench.compare.results import percent_text, ratio_text
from sparsebench.compare.run import _ratios
from sparsebench.data.base import Dataset
from sparsebench.formats import get_exporter
from sparsebench.formats.csr import csr_layer
from sparsebench.measure.interleaved import Comparison
from sparsebench.measure.kernels import kernel_evidence
from sparsebench.train import TrainConfig, fit


def _row(fmt, speedup, low=None, high=None, sparsity=80.0, **extra):
    low = speedup * 0.9 if low is None else low
    high = speedup * 1.1 if high is None else high
    return CompareRow("a.pt", "net", fmt, "torch", 1, sparsity_pct=sparsity, speedup=speedup,
                      speedup_low=low, speedup_high=high, **extra)  # fmt: skip


# 1. "1.00x slower than dense"


@pytest.mark.parametrize(
    "speedup, low, high, expected",
    [
        (0.998, 0.99, 0.999, "same"),  # prints as 1.00x
        (0.9951, 0.994, 0.9960, "same"),  # 1.00x [0.99, 1.00]
        (0.97, 0.90, 1.05, "same"),  # interval includes 1
        (0.90, 0.85, 0.95, "slower"),
        (1.004, 1.001, 1.006, "same"),
        (1.20, 1.10, 1.30, "faster"),
        (1.05, 0.95, 1.15, "same"),
    ],
)
def test_verdict_is_what_the_printed_figures_show(speedup, low, high, expected):
    assert verdict(_row("csr", speedup, low, high)) == expected


def test_a_ratio_within_noise_or_rounding_is_never_slower():
    text = advise([_row("dense", 1.0, 1.0, 1.0), _row("csr", 0.998, 0.99, 0.999)])
    assert "slower" not in text
    assert text == (
        "net: keep dense (no variant was faster); "
        "csr/torch about as fast as dense (1.00x) at 80% sparsity, batch 1"
    )
    noisy = advise([_row("dense", 1.0, 1.0, 1.0), _row("csr", 0.97, 0.90, 1.05)])
    assert "slower" not in noisy
    assert "csr/torch no faster than dense (0.97x, [0.90, 1.05] includes 1x)" in noisy
    slower = advise([_row("dense", 1.0, 1.0, 1.0), _row("csr", 0.90, 0.85, 0.95)])
    assert "csr/torch slower than dense (0.90x) at 80% sparsity" in slower


def test_a_best_variant_that_prints_as_1x_is_not_recommended():
    text = advise([_row("dense", 1.0, 1.0, 1.0), _row("csr", 1.004, 1.001, 1.006)])
    assert text.startswith("net: keep dense (no variant was faster)")
    assert "csr/torch about as fast as dense (1.00x)" in text and "use csr" not in text


def test_a_much_slower_variant_never_prints_as_0x():
    assert [ratio_text(x) for x in (1.0, 0.71, 0.0011, 0.0954, 12.345)] == [
        "1.00", "0.71", "0.0011", "0.10", "12.35"
    ]  # fmt: skip
    text = advise([_row("dense", 1.0, 1.0, 1.0), _row("csr", 0.0011, 0.001, 0.0012)])
    assert "csr/torch slower than dense (0.0011x)" in text
    table = render_markdown(CompareReport({}, {}, [_row("csr", 0.0011, 0.001, 0.0012)]))
    assert "| 0.0011x [0.001, 0.0012] |" in table


# 2. the latency column agrees with the speedup


def _variants():
    return [Variant("a.pt", "net", fmt, "torch", (1, 4)) for fmt in ("dense", "csr")]


def _fake_timing(variants):
    # drift between rounds, and more samples in the fast round: the pooled median of all samples
    # (10 ms dense, 25 ms csr) and the median of per-round ratios (0.83x) disagree; both
    # columns now come from the per-round medians (30 ms and 25 ms: 1.20x)
    dense, csr = (v.key for v in variants)
    return Comparison(
        {
            dense: [[10.0] * 9, [30.0] * 3, [30.0] * 3],
            csr: [[12.0] * 3, [25.0] * 3, [36.0] * 3],
        }
    )


def _cells(markdown: str, model: str, fmt: str) -> dict[str, str]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[:2] == [model, fmt]:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no row {model} {fmt}")


def test_latency_column_and_speedup_come_from_the_same_samples():
    variants = _variants()
    rows = [CompareRow("a.pt", "net", v.format, "torch", 1, sparsity_pct=0.0) for v in variants]
    _ratios(variants, rows, _fake_timing(variants))
    dense, csr = rows
    assert (dense.latency_median_ms, csr.latency_median_ms) == (30.0, 25.0)
    assert dense.speedup == 1.0 and csr.speedup == pytest.approx(30.0 / 25.0)
    assert csr.speedup_low <= csr.speedup <= csr.speedup_high
    assert csr.latency_p10_ms <= csr.latency_median_ms <= csr.latency_p90_ms
    assert csr.samples == 9 and dense.samples == 15
    report = CompareReport({"cpu": "test"}, {"device": "cpu", "rounds": 3}, rows, advise(rows))
    markdown = render_markdown(report)
    dense_ms = float(_cells(markdown, "net", "dense")["Latency (ms)"])
    cells = _cells(markdown, "net", "csr")
    shown = float(cells["Speedup [p10, p90]"].split("x")[0])
    assert shown == pytest.approx(dense_ms / float(cells["Latency (ms)"]), abs=0.005)
    assert "dense latency / variant latency" in markdown


# 3. kernel column: counts, "no" only when no layer ran a sparse kernel


def test_kernel_evidence_counts_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    model[0] = csr_layer(model[0])  # layer "2" claims to be converted but stays dense
    fragments = get_exporter("csr").kernel_evidence
    evidence = kernel_evidence(model, torch.randn(2, 16), ["0", "2"], fragments)
    assert evidence["converted_layers"] == 2 and evidence["sparse_layers"] == 1
    assert evidence["fallback_layers"] == 1 and evidence["fell_back_to_dense"] == ["2"]
    assert evidence["sparse_kernel_ran"] is False and evidence["any_sparse_kernel_ran"] is True
    row = _row("csr", 1.0, sparse_kernel_ran=evidence["sparse_kernel_ran"], kernels=evidence)
    assert kernel_text(row) == "yes (1 of 2 layers; 1 fell back)"  # from a report's evidence


@pytest.mark.parametrize(
    "ran, converted, expected",
    [
        (35, 36, "yes (35 of 36 layers; 1 fell back)"),
        (36, 36, "yes (36 of 36 layers)"),
        (0, 36, "no (0 of 36 layers; all fell back to dense)"),
        (0, 0, "no (no layer converted)"),
    ],
)
def test_kernel_column_counts_layers(ran, converted, expected):
    row = _row("csr", 1.0, sparse_kernel_ran=ran == converted > 0, converted_layers=converted,
               sparse_kernel_layers=ran)  # fmt: skip
    assert kernel_text(row) == expected
    report = CompareReport({}, {}, [row])
    assert f"| {expected} |" in render_markdown(report)


def test_kernel_column_of_old_reports_and_formats_without_kernels():
    assert kernel_text(_row("dense", 1.0)) == "n/a"
    assert kernel_text(_row("csr", 1.0, sparse_kernel_ran=True)) == "yes"
    assert kernel_text(_row("csr", 1.0, sparse_kernel_ran=False)) == "no (fell back to dense)"


# 4. percentages at a fixed precision


@pytest.mark.parametrize(
    "pct, digits, expected",
    [
        (80.0, None, "80"),
        (87.5, None, "87.5"),
        (83.33333333333334, None, "83.3"),
        (99.96, None, "99.9"),
        (100.0, None, "100"),
        (0.390625, None, "0.391"),
        (83.33333333333334, 1, "83.3"),
        (99.96, 1, "99.9"),
        (100.0, 1, "100.0"),
    ],
)
def test_percentages_are_rounded(pct, digits, expected):
    assert percent_text(pct, digits) == expected


def test_sparsity_is_rounded_in_table_and_advice():
    rows = [_row("dense", 1.0, 1.0, 1.0, sparsity=83.33333333333334),
            _row("csr", 0.5, 0.45, 0.55, sparsity=83.33333333333334)]  # fmt: skip
    report = CompareReport({}, {}, rows, advise(rows))
    assert "at 83.3% sparsity" in report.advice
    assert "| 83.3 |" in render_markdown(report) and "83.333" not in render_markdown(report)


# sanity warnings reach the compare output


def test_compare_prints_sanity_warnings_once():
    warning = "layer fc is 100 % sparse (all weights zero): its outputs are constant"
    rows = [_row("dense", 1.0, 1.0, 1.0, warnings=[warning], empty_layers=["fc"]),
            _row("csr", 1.2, 1.1, 1.3)]  # fmt: skip
    report = CompareReport({}, {}, rows, advise(rows))
    buffer = io.StringIO()
    print_compare(report, Console(file=buffer, width=120))
    assert buffer.getvalue().count(f"warning: net: {warning}") == 1
    assert f"- **warning:** net: {warning}" in render_markdown(report)
    assert ",fc," in render_csv(report).splitlines()[1]


# 5. progress under a time budget


def _fit_output(config: TrainConfig) -> str:
    torch.manual_seed(0)
    data = Dataset("tiny", torch.randn(16, 8), torch.randint(0, 2, (16,)), ["a", "b"])
    buffer = io.StringIO()
    epochs = fit(nn.Linear(8, 2), data, (1, 8), config, console=Console(file=buffer, width=120))
    assert epochs == config.epochs  # the budget is far away
    return buffer.getvalue()


def test_progress_shows_the_time_budget_not_the_epoch_cap():
    text = _fit_output(TrainConfig(epochs=3, max_seconds=600))
    assert "epoch 3 · " in text and "/600 s budget" in text
    assert "3/3" not in text


def test_progress_without_a_budget_counts_epochs():
    text = _fit_output(TrainConfig(epochs=3))
    assert "epoch 3/3" in text and "budget" not in text
