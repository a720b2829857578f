"""Rich tables for the terminal: the row-per-model table, notes, and an optional per-layer table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..results import ProfileRow, Report
from .columns import columns_for, row_label, unavailable_notes


def profile_table(report: Report) -> Table:
    """The assignment's Task-0 layout: one row per metric, one column per model.

    Metrics as rows keep the table narrow enough for a terminal whatever the number of
    figures; the markdown report also has the row-per-model layout.
    """
    rows = report.results
    first = rows[0] if rows else None
    title = "sparsebench profile"
    if first is not None:
        title += f" — {first.device}, batch {first.batch_size}, {first.threads} threads"
    table = Table(title=title, caption="MB = 2^20 B · MACs/sample · latency: median per batch")
    table.add_column("Metric", style="bold")
    for row in rows:
        table.add_column(row_label(row), justify="right")
    for column in columns_for(rows):
        table.add_row(column.metric, *(column.text(row) for row in rows))
    return table


def per_layer_table(row: ProfileRow) -> Table:
    """Sparsity and MACs of each prunable layer of one row."""
    table = Table(title=f"{row_label(row)}: prunable layers")
    for header in ("Layer", "Type", "Shape", "Params", "Non-zero", "Sparsity (%)", "MACs (M)"):
        table.add_column(header, justify="left" if header in ("Layer", "Type") else "right")
    for layer in row.per_layer or []:
        table.add_row(
            layer["name"] or "(root)",
            layer["kind"],
            "x".join(map(str, layer["shape"])),
            f"{layer['params']:,}",
            f"{layer['nonzero']:,}",
            f"{layer['sparsity_pct']:.2f}",
            f"{layer['macs_m']:.3f}",
        )
    return table


def print_report(report: Report, console: Console | None = None) -> None:
    """Print the profile table, per-layer tables when present, and notes on n/a figures."""
    console = console or Console()
    console.print(profile_table(report))
    for row in report.results:
        if row.per_layer is not None:
            console.print(per_layer_table(row))
    for note in unavailable_notes(report.results):
        console.print(f"[dim]• {note}[/dim]")
