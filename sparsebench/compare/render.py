"""Render a CompareReport: rich table, markdown, CSV and JSON (rendering only, no measuring)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import SparsebenchError
from .results import CompareReport, CompareRow, percent_text, ratio_text

NA = "n/a"
TABLE_WIDTH = 220


def _num(value, digits=2, suffix=""):
    return NA if value is None else f"{value:,.{digits}f}{suffix}"


def _speedup(row: CompareRow) -> str:
    if row.speedup is None:
        return NA
    low, high = ratio_text(row.speedup_low), ratio_text(row.speedup_high)
    return f"{ratio_text(row.speedup)}x [{low}, {high}]"


def _kernel_counts(row: CompareRow) -> tuple[int, int] | None:
    """(layers that ran a sparse kernel, converted layers), from the row or its evidence."""
    if row.converted_layers is not None and row.sparse_kernel_layers is not None:
        return row.sparse_kernel_layers, row.converted_layers
    kernels = row.kernels or {}
    if "converted_layers" in kernels and "sparse_layers" in kernels:
        return kernels["sparse_layers"], kernels["converted_layers"]
    return None


def kernel_text(row: CompareRow) -> str:
    """'yes (36 of 36 layers)', 'yes (35 of 36 layers; 1 fell back)', or 'no' when none ran."""
    if row.sparse_kernel_ran is None:
        return NA
    counts = _kernel_counts(row)
    if counts is None:  # a report written before the counts were kept
        return "yes" if row.sparse_kernel_ran else "no (fell back to dense)"
    ran, converted = counts
    if converted == 0:
        return "no (no layer converted)"
    if ran == 0:
        return f"no (0 of {converted} layers; all fell back to dense)"
    fell_back = converted - ran
    return f"yes ({ran} of {converted} layers" + (f"; {fell_back} fell back)" if fell_back else ")")


COLUMNS: list[tuple[str, Callable[[CompareRow], str]]] = [
    ("Model", lambda r: r.model),
    ("Format", lambda r: r.format),
    ("Runtime", lambda r: r.runtime),
    ("Sparsity (%)", lambda r: NA if r.sparsity_pct is None else percent_text(r.sparsity_pct, 1)),
    ("Size (MB)", lambda r: _num(r.size_mb, 3)),
    ("MACs (M)", lambda r: _num(r.macs_m, 3)),
    ("Eff. MACs (M)", lambda r: _num(r.effective_macs_m, 3)),
    ("Latency (ms)", lambda r: _num(r.latency_median_ms, 3)),
    ("Speedup [p10, p90]", _speedup),
    ("Theor. speedup", lambda r: _num(r.theoretical_speedup, 2, "x")),
    ("Size ratio", lambda r: _num(r.size_ratio, 2, "x")),
    ("Δtop-1 (pts)", lambda r: _num(r.delta_top1, 2)),
    ("Verify err", lambda r: NA if r.verify_err is None else f"{r.verify_err:.1e}"),
    ("Sparse kernel ran", kernel_text),
]


def _caption(report: CompareReport) -> str:
    env, cfg = report.environment, report.config
    return (
        f"{cfg.get('device')} ({env.get('gpu') or env.get('cpu')}), torch {env.get('torch')}, "
        f"{cfg.get('torch_threads')} threads, {cfg.get('rounds')} interleaved rounds. Latency = "
        "median over rounds of each round's median call; speedup = dense latency / variant "
        "latency (>1 faster) [p10, p90 of per-round ratios]; theoretical = dense MACs / "
        "effective MACs; size ratio = dense stored size / variant size; MB = 2^20 B."
    )


def _unavailable(report: CompareReport) -> list[str]:
    return [f"{r.label}: not measured: {r.unavailable}" for r in report.rows if r.unavailable]


def _warnings(report: CompareReport) -> list[str]:
    """Sanity warnings (empty layers, constant outputs) of each checkpoint, once each."""
    seen = dict.fromkeys(f"{r.model}: {w}" for r in report.rows for w in r.warnings)
    return list(seen)


def terminal_table(report: CompareReport) -> Table:
    """One row per measured variant."""
    table = Table(title="sparsebench compare", caption=escape(_caption(report)))
    for header, _ in COLUMNS:
        table.add_column(
            escape(header), justify="left" if header in ("Model", "Format") else "right"
        )
    for row in report.rows:
        if row.unavailable is None:
            table.add_row(*(escape(get(row)) for _, get in COLUMNS))
    return table


def print_compare(report: CompareReport, console: Console) -> None:
    """Table, notes on unmeasured variants, then the advice line.

    The table gets at least TABLE_WIDTH columns so that its 14 figures stay readable when the
    output is piped (rich assumes 80 columns then).
    """
    wide = Console(file=console.file, width=max(console.width, TABLE_WIDTH))
    wide.print(terminal_table(report))
    for note in _unavailable(report):
        console.print(f"[dim]• {escape(note)}[/dim]", highlight=False)
    for warning in _warnings(report):
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    console.print(f"advice: {report.advice}", markup=False, highlight=False)


def render_markdown(report: CompareReport) -> str:
    """The markdown report: table, unmeasured variants, advice and linked plots."""
    header = [h for h, _ in COLUMNS]
    lines = ["# sparsebench compare", "", _caption(report), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(get(r) for _, get in COLUMNS) + " |"
        for r in report.rows
        if r.unavailable is None
    ]
    lines += ["", *(f"- {note}" for note in _unavailable(report))]
    lines += [f"- **warning:** {warning}" for warning in _warnings(report)]
    lines += ["", f"**Advice:** {report.advice}", ""]
    lines += [f"![{Path(p).stem}]({Path(p).as_posix()})" for p in report.plots]
    return "\n".join(lines).rstrip() + "\n"


def render_csv(report: CompareReport) -> str:
    """One CSV line per variant with every field of the row (raw numbers)."""
    buffer = io.StringIO()
    names = [k for k in CompareRow.__dataclass_fields__ if k not in ("kernels", "warnings")]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        values = {k: getattr(row, k) for k in names}
        writer.writerow({k: ";".join(v) if isinstance(v, list) else v for k, v in values.items()})
    return buffer.getvalue()


RENDERERS = {
    ".md": render_markdown,
    ".json": lambda report: json.dumps(report.to_dict(), indent=2) + "\n",
    ".csv": render_csv,
}


def renderer(path: str | Path) -> Callable[[CompareReport], str]:
    """The renderer for an output path's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in RENDERERS:
        raise SparsebenchError(f"unknown report type '{suffix}': use .md, .json or .csv")
    return RENDERERS[suffix]
