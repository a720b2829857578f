"""Memory over the after-load baseline: the increases measure_memory records, their JSON, and
the tables showing them instead of absolute figures that tie between rows."""

from __future__ import annotations

import io
import json
import sys
import types

import pytest
import torch
from rich.console import Console

from sparsebench.measure import memory
from sparsebench.measure.memory import measure_memory
from sparsebench.report import read_report, write_report
from sparsebench.report.columns import columns_for, unavailable_notes
from sparsebench.report.markdown import render_markdown
from sparsebench.report.terminal import print_report
from sparsebench.results import MB, LatencyStats, MemoryResult, ProfileRow, Report

# --- the result: baseline and increases -----------------------------------------------------


def test_cpu_result_records_the_increase_over_the_baseline():
    baseline = 400 * MB
    rss = [400 * MB, 410 * MB, 430 * MB, 420 * MB]
    done = {"window_s": 1.0, "iterations": 10, "threads": 2, "hwm_kb": None}
    result = memory._cpu_result(baseline, rss, [0.0, 0.1, 0.2, 0.3], done, 0.1)
    assert result.baseline_mb == pytest.approx(400)
    assert result.peak_mb == pytest.approx(430)
    assert result.avg_mb == pytest.approx(415)
    assert result.peak_increase_mb == pytest.approx(30)
    assert result.avg_increase_mb == pytest.approx(15)
    assert result.details["peak_over_baseline_mb"] == pytest.approx(30)  # kept as before


class FakeCuda:
    """Allocator counters: 100 MB of weights, 150 MB live after a forward, 300 MB peak."""

    def __init__(self):
        self.allocated = self.peak = 100 * MB

    def forward(self):
        self.peak, self.allocated = max(self.peak, 300 * MB), 150 * MB

    def memory_allocated(self, device=None):
        return self.allocated

    def max_memory_allocated(self, device=None):
        return self.peak

    def reset_peak_memory_stats(self, device=None):
        self.peak = self.allocated

    def synchronize(self, device=None):
        pass


def test_cuda_result_records_the_increase_over_the_baseline(monkeypatch):
    cuda = FakeCuda()
    for name in ("memory_allocated", "max_memory_allocated", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    monkeypatch.setattr(torch.cuda, "synchronize", cuda.synchronize)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML missing: only its details say so
    model = types.SimpleNamespace(to=lambda device: model_call)
    inputs = types.SimpleNamespace(to=lambda device: inputs)

    def model_call(x):
        cuda.forward()
        return x

    result = measure_memory(lambda: (model, inputs), device="cuda:0", min_seconds=0.0)
    assert result.baseline_mb == pytest.approx(150)  # after the warm-up forward
    assert result.peak_increase_mb == pytest.approx(150)
    assert result.avg_increase_mb == pytest.approx(0)


def test_increases_are_derived_when_absent_and_kept_when_given():
    derived = MemoryResult(457.388, 455.0, baseline_mb=450.0)
    assert derived.peak_increase_mb == pytest.approx(7.388)
    assert derived.avg_increase_mb == pytest.approx(5.0)
    given = MemoryResult(457.388, 455.0, baseline_mb=450.0, peak_increase_mb=1.0)
    assert given.peak_increase_mb == 1.0
    assert MemoryResult(457.0, 455.0).peak_increase_mb is None  # no baseline: nothing to add
    assert MemoryResult(None, None, unavailable_reason="off").avg_increase_mb is None


# --- JSON ----------------------------------------------------------------------------------


def _row(name: str, peak: float | None, avg: float | None, baseline: float | None) -> ProfileRow:
    mem = (
        MemoryResult(peak, avg, baseline_mb=baseline, method="rss-sampled-subprocess")
        if peak is not None
        else None
    )
    return ProfileRow(
        model=name, format="dense", runtime="torch", device="cpu", batch_size=1,
        input_shape=[1, 3, 32, 32], params=100, nonzero_params=20, sparsity_pct=80.0,
        prunable_params=90, size_mb=58.251, size_source="file", macs_m=314.002,
        effective_macs_m=62.8, peak_mem_mb=peak, avg_mem_mb=avg,
        latency_ms=LatencyStats.from_samples([15.0]), throughput=64.5,
        energy_mj=None, energy_method="disabled", memory=mem,
    )  # fmt: skip


def _report(*rows: ProfileRow) -> Report:
    return Report(environment={"torch": "x", "cpu": "test cpu"}, config={}, results=list(rows))


def test_json_carries_absolute_and_increase(tmp_path):
    report = _report(_row("dense", 457.388, 455.0, 450.0), _row("pruned", 457.388, 452.5, 449.0))
    path = write_report(report, tmp_path / "r.json")
    saved = json.loads(path.read_text())["results"][1]
    assert saved["peak_mem_mb"] == 457.388
    assert saved["memory"]["peak_mb"] == 457.388
    assert saved["memory"]["baseline_mb"] == 449.0
    assert saved["memory"]["peak_increase_mb"] == pytest.approx(8.388)
    assert saved["memory"]["avg_increase_mb"] == pytest.approx(3.5)
    assert read_report(path) == report


def test_old_json_without_increases_reads_and_derives_them(tmp_path):
    data = _report(_row("dense", 457.388, 455.0, 450.0)).to_dict()
    for key in ("peak_increase_mb", "avg_increase_mb"):
        del data["results"][0]["memory"][key]
    (tmp_path / "old.json").write_text(json.dumps(data))
    read = read_report(tmp_path / "old.json").results[0].memory
    assert read.peak_increase_mb == pytest.approx(7.388)
    assert read.avg_increase_mb == pytest.approx(5.0)


# --- tables --------------------------------------------------------------------------------


def _headers(rows: list[ProfileRow]) -> list[str]:
    return [c.header for c in columns_for(rows)]


def test_tied_peak_shows_the_increase_and_says_so():
    # same absolute peak to the last printed digit, different averages
    rows = [_row("dense", 457.388, 455.0, 450.0), _row("pruned", 457.3881, 452.5, 449.0)]
    headers = _headers(rows)
    assert "Peak Mem (+MB over load)" in headers and "Peak Mem (MB)" not in headers
    assert "Avg Mem (MB)" in headers  # the averages differ: absolute kept
    assert "Load Mem (MB)" in headers

    text = render_markdown(_report(*rows))
    assert "| **Peak Memory (+MB over load)** | +7.388 | +8.388 |" in text
    assert "| **Average Memory (MB)** | 455.000 | 452.500 |" in text
    assert "| Model | Sparsity (%) | Size (MB) | MACs (M) | Eff. MACs (M) | Peak Mem (+MB" in text
    assert "| dense | 80.00 | 58.251 | 314.002 | 62.800 | +7.388 | 455.000 | 450.000 |" in text
    assert (
        "- Peak Memory is shown as the increase over memory after load (Load Mem): the absolute "
        "figures tie at the printed precision (457.388 MB for dense, 457.388 MB for pruned); "
        "the JSON has both" in text
    )
    assert "Average Memory is shown as the increase" not in text


def test_both_columns_switch_when_both_tie():
    rows = [_row("a", 500.0, 480.0, 450.0), _row("b", 500.0, 480.0, 440.0)]
    headers = _headers(rows)
    assert "Peak Mem (+MB over load)" in headers and "Avg Mem (+MB over load)" in headers
    assert len([n for n in unavailable_notes(rows) if "increase over memory" in n]) == 2


def test_one_tie_among_three_rows_switches_the_whole_column():
    rows = [_row("a", 500.0, 480.0, 450.0), _row("b", 500.0, 470.0, 440.0)]
    rows.append(_row("c", 700.0, 460.0, 430.0))
    text = render_markdown(_report(*rows))
    assert "| **Peak Memory (+MB over load)** | +50.000 | +60.000 | +270.000 |" in text
    assert "(500.000 MB for a, 500.000 MB for b)" in text  # only the tied rows are named


def test_distinct_figures_keep_the_absolute_columns():
    rows = [_row("dense", 457.388, 455.0, 450.0), _row("pruned", 457.389, 452.5, 449.0)]
    assert _headers(rows) == _headers([rows[0]])
    assert "Peak Mem (MB)" in _headers(rows)
    assert not [n for n in unavailable_notes(rows) if "increase over memory" in n]


def test_a_single_row_keeps_the_absolute_figure():
    text = render_markdown(_report(_row("dense", 457.388, 455.0, 450.0)))
    assert "| **Peak Memory (MB)** | 457.388 |" in text
    assert "+MB over load" not in text


def test_no_switch_when_a_tied_row_has_no_baseline():
    rows = [_row("dense", 457.388, 455.0, 450.0), _row("pruned", 457.388, 452.5, None)]
    assert "Peak Mem (MB)" in _headers(rows)
    rows = [_row("dense", 457.388, 455.0, 450.0), _row("off", None, None, None)]
    assert "Peak Mem (MB)" in _headers(rows)  # n/a rows tie with nothing


def test_negative_increase_shows_its_sign():
    rows = [_row("a", 500.0, 440.0, 450.0), _row("b", 500.0, 445.0, 450.0)]
    assert "| **Average Memory (MB)** | 440.000 | 445.000 |" in render_markdown(_report(*rows))
    rows = [_row("a", 500.0, 445.0, 450.0), _row("b", 501.0, 445.0, 450.0)]
    assert "| **Average Memory (+MB over load)** | -5.000 | -5.000 |" in render_markdown(
        _report(*rows)
    )


def test_terminal_table_switches_too():
    rows = [_row("dense", 457.388, 455.0, 450.0), _row("pruned", 457.388, 452.5, 449.0)]
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_report(_report(*rows), console)
    out = console.file.getvalue()
    assert "Peak Memory (+MB over load)" in out and "+8.388" in out
    assert "Peak Memory is shown as the increase over memory after load" in out
