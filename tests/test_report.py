"""Reports: JSON round trip (the source of truth), markdown layouts, CSV, atomic writes."""

from __future__ import annotations

import csv
import io
import json

import pytest

from sparsebench import SparsebenchError
from sparsebench.report import read_report, write_report
from sparsebench.report.markdown import render_markdown
from sparsebench.results import SCHEMA, EnergyResult, LatencyStats, MemoryResult, ProfileRow, Report


def _row(name="vgg", energy=None, top1=None):
    return ProfileRow(
        model=name, format="dense", runtime="torch", device="cpu", batch_size=1,
        input_shape=[1, 3, 32, 32], params=100, nonzero_params=20, sparsity_pct=80.0,
        prunable_params=90, size_mb=58.251, size_source="file", macs_m=314.002,
        effective_macs_m=62.8, peak_mem_mb=457.388, avg_mem_mb=73.249,
        latency_ms=LatencyStats.from_samples([15.0, 15.5, 16.0]), throughput=64.5,
        energy_mj=energy, energy_method="rapl-package" if energy else "unavailable",
        energy=EnergyResult(energy, "unavailable", unavailable_reason="no RAPL counters"),
        top1=top1, top5=None if top1 is None else 98.27,
    )  # fmt: skip


def _report(*rows):
    return Report(environment={"torch": "x", "cpu": "test cpu"}, config={}, results=list(rows))


def test_json_round_trip_keeps_every_field(tmp_path):
    report = _report(_row(), _row("pruned", energy=12.5, top1=82.92))
    path = write_report(report, tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    row = data["results"][0]
    for key in (
        "model",
        "format",
        "runtime",
        "device",
        "batch_size",
        "params",
        "nonzero_params",
        "sparsity_pct",
        "size_mb",
        "macs_m",
        "effective_macs_m",
        "peak_mem_mb",
        "avg_mem_mb",
        "throughput",
        "energy_mj",
        "energy_method",
        "top1",
        "top5",
    ):
        assert key in row  # fmt: skip
    assert set(row["latency_ms"]) >= {"median", "mean", "p90", "p99", "std", "cv", "samples"}
    assert row["energy_mj"] is None and row["top1"] is None
    assert read_report(path) == report


def test_other_schema_is_refused(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": "something/v0", "results": []}))
    with pytest.raises(SparsebenchError, match="schema"):
        read_report(path)


def test_markdown_has_both_assignment_layouts_and_explains_na():
    text = render_markdown(_report(_row(), _row("pruned", energy=12.5, top1=82.92)))
    assert "| Metric | vgg | pruned |" in text  # Task-0: metric by model
    assert "| **Model Size (MB)** | 58.251 | 58.251 |" in text
    assert "| Model | Sparsity (%) | Size (MB) | MACs (M) |" in text  # row per model
    assert "| vgg | 80.00 | 58.251 | 314.002 |" in text
    assert "Energy n/a for vgg: no RAPL counters" in text
    assert "Accuracy n/a: no --data given" in text


def test_memory_method_is_explained_once():
    rss = MemoryResult(457.388, 73.249, baseline_mb=450.0, method="rss-sampled-subprocess")
    rows = [_row(), _row("pruned")]
    for row in rows:
        row.memory = rss
    text = render_markdown(_report(*rows))
    assert text.count("resident set (RSS) of a separate process") == 1
    assert "resident set" not in render_markdown(_report(_row()))  # no memory measured


def test_csv_has_one_line_per_row_and_empty_cells_for_na():
    report = _report(_row(), _row("pruned", energy=12.5, top1=82.92))
    from sparsebench.report.csv_table import render_csv

    lines = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [line["model"] for line in lines] == ["vgg", "pruned"]
    assert lines[0]["energy_mj"] == "" and lines[1]["energy_mj"] == "12.5"
    assert float(lines[0]["latency_median_ms"]) == 15.5


def test_existing_output_needs_force(tmp_path):
    path = tmp_path / "r.md"
    path.write_text("keep me")
    with pytest.raises(SparsebenchError, match="--force"):
        write_report(_report(_row()), path)
    assert path.read_text() == "keep me"
    write_report(_report(_row()), path, force=True)
    assert path.read_text().startswith("# sparsebench profile")


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(SparsebenchError, match="unknown report type"):
        write_report(_report(_row()), tmp_path / "r.xlsx")


def test_failed_render_leaves_no_file(tmp_path, monkeypatch):
    import sparsebench.report.writer as writer

    def broken(report):
        raise RuntimeError("boom")

    monkeypatch.setitem(writer.RENDERERS, ".md", broken)
    with pytest.raises(RuntimeError):
        write_report(_report(_row()), tmp_path / "r.md")
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    path = write_report(_report(_row()), tmp_path / "r.json")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
