"""PNG plots of a comparison (matplotlib, Agg backend, imported only when plotting).

latency.png: median latency per variant with p10-p90 error bars; speedup.png: measured vs
theoretical speedup with the y = x line; accuracy.png (with --data): top-1 vs sparsity.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..io import atomic_write
from .results import CompareReport


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, force: bool) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), force=force)
    return str(path)


def _latency(plt, rows, path, force):
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(rows)), 4))
    medians = [r.latency_median_ms for r in rows]
    errors = [[m - r.latency_p10_ms for m, r in zip(medians, rows, strict=True)],
              [r.latency_p90_ms - m for m, r in zip(medians, rows, strict=True)]]  # fmt: skip
    ax.bar(range(len(rows)), medians, yerr=errors, capsize=3, color="tab:blue")
    ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=45, ha="right")
    ax.set_ylabel("latency per batch (ms): median, p10-p90")
    ax.set_title("Latency by variant")
    return _save(plt, fig, path, force)


def _speedup(plt, rows, path, force):
    rows = [r for r in rows if r.theoretical_speedup is not None]
    fig, ax = plt.subplots(figsize=(5, 4))
    for row in rows:
        err = [[row.speedup - row.speedup_low], [row.speedup_high - row.speedup]]
        ax.errorbar(row.theoretical_speedup, row.speedup, yerr=err, fmt="o", capsize=3,
                    label=row.label)  # fmt: skip
    top = max([1.0, *(max(r.theoretical_speedup, r.speedup_high) for r in rows)]) * 1.1
    ax.plot([0, top], [0, top], "k--", linewidth=1, label="y = x")
    ax.set_xlabel("theoretical speedup (dense MACs / effective MACs)")
    ax.set_ylabel("measured speedup over dense")
    ax.legend(fontsize=6)
    ax.set_title("Measured vs theoretical speedup")
    return _save(plt, fig, path, force)


def _accuracy(plt, rows, path, force):
    fig, ax = plt.subplots(figsize=(5, 4))
    for row in rows:
        ax.scatter(row.sparsity_pct, row.top1, label=row.label)
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("top-1 (%)")
    ax.legend(fontsize=6)
    ax.set_title("Accuracy vs sparsity")
    return _save(plt, fig, path, force)


def write_plots(report: CompareReport, folder: str | Path, stem: str, force: bool = False):
    """Write the plots as `<stem>-<plot>.png` into `folder`; returns their paths."""
    plt, folder = _pyplot(), Path(folder)
    rows = [r for r in report.rows if r.measured]
    if not rows:
        return []
    paths = [_latency(plt, rows, folder / f"{stem}-latency.png", force),
             _speedup(plt, rows, folder / f"{stem}-speedup.png", force)]  # fmt: skip
    scored = [r for r in rows if r.top1 is not None]
    if scored:
        paths.append(_accuracy(plt, scored, folder / f"{stem}-accuracy.png", force))
    return paths
