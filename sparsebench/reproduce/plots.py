"""PNG plots of the recipes (matplotlib with the Agg backend, imported when plotting)."""

from __future__ import annotations

import io
from pathlib import Path

from ..io import atomic_write


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> str:
    """Write `fig` as a PNG at `path` (atomically); returns the file name."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), force=True)
    return path.name


def curves(path: Path, xs, series: dict[str, list[list[float]]], xlabel: str, ylabel: str,
           title: str) -> str:  # fmt: skip
    """Mean line and min-max band per series; `series[name][i]` holds the seeds' values at
    xs[i]."""
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        values = np.asarray(values, dtype=float)
        mean = values.mean(axis=1)
        ax.plot(xs, mean, marker="o", label=name)
        if values.shape[1] > 1:
            ax.fill_between(xs, values.min(axis=1), values.max(axis=1), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def image(path: Path, array, title: str) -> str:
    """A 2-D array as a heat map."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    shown = ax.imshow(array, cmap="viridis")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return save(fig, path)
