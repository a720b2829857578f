"""The figures of the assignment tables: one definition shared by every renderer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..results import ProfileRow

NA = "n/a"


@dataclass(frozen=True)
class Column:
    """A table figure: its header, how to read it from a row and how to format it."""

    header: str
    metric: str
    get: Callable[[ProfileRow], float | str | None]
    digits: int = 3
    scientific: bool = False
    signed: bool = False  # an increase: "+1.234", "-0.500"

    def text(self, row: ProfileRow) -> str:
        value = self.get(row)
        if value is None:
            return NA
        if isinstance(value, str):
            return value
        if self.scientific:
            return f"{value:.1e}"
        sign = "+" if self.signed else ""
        return f"{value:{sign},.{self.digits}f}"


def _lat(row: ProfileRow) -> float:
    return row.latency_ms.median


def _kernel(row: ProfileRow) -> str | None:
    if row.kernels is None:
        return None
    ran, converted = row.kernels["sparse_layers"], row.kernels["converted_layers"]
    fell = converted - ran
    if not ran and converted:
        return f"no (0 of {converted} layers; all fell back to dense)"
    return f"yes ({ran} of {converted} layers" + (f"; {fell} fell back)" if fell else ")")


def _verify(row: ProfileRow) -> float | None:
    return row.verification.get("max_rel_err") if row.verification else None


COLUMNS: list[Column] = [
    Column("Sparsity (%)", "Sparsity (%)", lambda r: r.sparsity_pct, 2),
    Column("Size (MB)", "Model Size (MB)", lambda r: r.size_mb),
    Column("MACs (M)", "MACs (M)", lambda r: r.macs_m),
    Column("Eff. MACs (M)", "Effective MACs (M)", lambda r: r.effective_macs_m),
    Column("Peak Mem (MB)", "Peak Memory (MB)", lambda r: r.peak_mem_mb),
    Column("Avg Mem (MB)", "Average Memory (MB)", lambda r: r.avg_mem_mb),
    Column(
        "Load Mem (MB)",
        "Memory after Load (MB)",
        lambda r: r.memory.baseline_mb if r.memory else None,
    ),
    Column("Latency (ms)", "Latency (ms)", _lat),
    Column("CV (%)", "Latency CV (%)", lambda r: 100 * r.latency_ms.cv, 1),
    Column("Throughput (/s)", "Throughput (samples/s)", lambda r: r.throughput, 1),
    Column("Energy (mJ)", "Energy (mJ)", lambda r: r.energy_mj),
    Column("Top-1 (%)", "Top-1 Accuracy (%)", lambda r: r.top1, 2),
    Column("Top-5 (%)", "Top-5 Accuracy (%)", lambda r: r.top5, 2),
    Column("Stored (MB)", "Stored Weights (MB)", lambda r: r.stored_mb),
    Column("Verify err", "Verification Max Rel. Error", _verify, scientific=True),
    Column("Sparse kernel", "Sparse Kernel Ran", _kernel),
]


PEAK_INCREASE = Column(
    "Peak Mem (+MB over load)",
    "Peak Memory (+MB over load)",
    lambda r: r.memory.peak_increase_mb if r.memory else None,
    signed=True,
)
AVG_INCREASE = Column(
    "Avg Mem (+MB over load)",
    "Average Memory (+MB over load)",
    lambda r: r.memory.avg_increase_mb if r.memory else None,
    signed=True,
)
INCREASE_OF = {"Peak Mem (MB)": PEAK_INCREASE, "Avg Mem (MB)": AVG_INCREASE}


def columns_for(rows: list[ProfileRow]) -> list[Column]:
    """COLUMNS for one table of `rows`: a memory column whose absolute figures tie between two
    or more rows at the printed precision shows each row's increase over its after-load
    memory instead (where every row has one), since the tie says nothing about the models.
    A single row keeps the absolute figure; the JSON always has both."""
    switched = _switched(rows)
    return [INCREASE_OF[c.header] if c in switched else c for c in COLUMNS]


def _switched(rows: list[ProfileRow]) -> dict[Column, list[ProfileRow]]:
    """The absolute memory columns shown as increases, each with the rows whose figures tie."""
    switched = {}
    for column in COLUMNS:
        increase = INCREASE_OF.get(column.header)
        shown = [r for r in rows if increase is not None and column.get(r) is not None]
        if not shown or any(increase.get(r) is None for r in shown):
            continue
        texts = [column.text(r) for r in shown]
        tied = [r for r, text in zip(shown, texts, strict=True) if texts.count(text) > 1]
        if tied:
            switched[column] = tied
    return switched


def increase_notes(rows: list[ProfileRow]) -> list[str]:
    """One line per memory column that `columns_for` shows as the increase over load."""
    notes = []
    for column, tied in _switched(rows).items():
        figures = ", ".join(f"{column.text(r)} MB for {row_label(r)}" for r in tied)
        notes.append(
            f"{column.metric.removesuffix(' (MB)')} is shown as the increase over memory after "
            f"load (Load Mem): the absolute figures tie at the printed precision ({figures}); "
            "the JSON has both"
        )
    return notes


def row_label(row: ProfileRow) -> str:
    """How a row is named in tables: the model, plus format/runtime when not plain torch."""
    if (row.format, row.runtime) == ("dense", "torch"):
        return row.model
    return f"{row.model} ({row.format}, {row.runtime})"


MEMORY_METHODS = {
    "rss-sampled-subprocess": "Memory on CPU is the resident set (RSS) of a separate process that "
    "loads only this model, sampled over the inference window: it includes the Python and torch "
    "runtime, so compare the peak with Load Mem (RSS right after loading)",
    "cuda-allocator+nvml": "Memory on CUDA is the torch allocator's peak over the inference "
    "window (after a reset) and its average after each call; Load Mem is what it held after "
    "loading; NVML's device-wide figures are in the JSON",
}


def unavailable_notes(rows: list[ProfileRow]) -> list[str]:
    """Why figures shown as n/a are missing, how energy and memory were measured, and which
    memory columns show the increase over load (`columns_for`), once per reason."""
    notes: list[str] = increase_notes(rows)

    def add(text: str) -> None:
        if text not in notes:
            notes.append(text)

    for row in rows:
        if row.energy_mj is None:
            reason = row.energy.unavailable_reason if row.energy else "disabled (--no-energy)"
            add(f"Energy n/a for {row_label(row)}: {reason}")
        elif row.energy is not None and row.energy.is_estimate:
            add(f"Energy for {row_label(row)} is an estimate ({row.energy_method})")
        if row.peak_mem_mb is None:
            reason = row.memory.unavailable_reason if row.memory else "disabled (--no-memory)"
            add(f"Memory n/a for {row_label(row)}: {reason}")
        elif row.memory is not None and row.memory.method in MEMORY_METHODS:
            add(MEMORY_METHODS[row.memory.method])
        if row.top1 is None:
            add("Accuracy n/a: no --data given")
        elif row.top5 is None and row.accuracy:
            add(f"Top-5 n/a for {row_label(row)}: {row.accuracy.get('top5_reason')}")
        for warning in row.warnings:
            add(f"{row_label(row)}: {warning}")
    return notes
