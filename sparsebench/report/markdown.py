"""Markdown in both layouts of the assignment: metric-by-model (Task 0) and row-per-model."""

from __future__ import annotations

from ..results import Report
from .columns import columns_for, row_label, unavailable_notes


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def metric_by_model(report: Report) -> list[str]:
    """Task-0 layout: one row per metric, one column per model."""
    rows = report.results
    header = ["Metric", *(row_label(r) for r in rows)]
    body = [[f"**{c.metric}**", *(c.text(r) for r in rows)] for c in columns_for(rows)]
    return _table(header, body)


def row_per_model(report: Report) -> list[str]:
    """Task-1/2 layout: one row per model, one column per metric."""
    columns = columns_for(report.results)
    header = ["Model", *(c.header for c in columns)]
    body = [[row_label(r), *(c.text(r) for c in columns)] for r in report.results]
    return _table(header, body)


def render_markdown(report: Report) -> str:
    """The whole markdown report: both tables, notes on missing figures and the environment."""
    env = report.environment
    device = report.results[0].device if report.results else "?"
    lines = [
        "# sparsebench profile",
        "",
        f"Device: {device} ({env.get('gpu') or env.get('cpu')}), torch {env.get('torch')}, "
        f"threads {report.results[0].threads if report.results else '?'}. "
        "MB = 2^20 bytes; MACs per sample; latency = median per batch.",
        "",
        *metric_by_model(report),
        "",
        *row_per_model(report),
    ]
    notes = unavailable_notes(report.results)
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    if report.failures:
        lines += ["", "Not profiled:", ""]
        lines += [f"- `{f['source']}`: {f['error']}" for f in report.failures]
    return "\n".join(lines) + "\n"
