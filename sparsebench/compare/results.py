"""Comparison results as plain dataclasses; their versioned JSON is what reports render."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..results import envelope, read_envelope

SCHEMA = "sparsebench.compare/v1"


def ratio_text(value: float) -> str:
    """A speedup or ratio: 2 decimals (1.02, 0.71), 2 significant digits below 0.1 (0.0011),
    so a variant a thousand times slower never prints as 0.00x."""
    return f"{value:.2f}" if abs(value) >= 0.095 or value == 0 else f"{value:.2g}"


def percent_text(pct: float, digits: int | None = None) -> str:
    """A sparsity or density in percent: `digits` decimals, or 3 significant digits (80, 87.5,
    0.391); a value short of 100 never prints as 100 (99.96 -> 99.9)."""
    if 0 < 100 - pct < 0.1:
        pct = 99.9
    return f"{pct:.3g}" if digits is None else f"{pct:.{digits}f}"


@dataclass
class CompareRow:
    """One (checkpoint, format, runtime) variant: static figures, timing and the ratios.

    `latency_*_ms` are the median and p10/p90 over rounds of each round's median call time in
    one interleaved run of all variants; `speedup` is the baseline's `latency_median_ms` / this
    row's (> 1 means faster than dense) and `speedup_low`/`speedup_high` the p10/p90 of
    per-round ratios of the same run (widened to include `speedup`).
    """

    checkpoint: str
    model: str
    format: str
    runtime: str
    batch_size: int
    unavailable: str | None = None
    sparsity_pct: float | None = None
    size_mb: float | None = None
    size_source: str = ""
    macs_m: float | None = None
    effective_macs_m: float | None = None
    latency_median_ms: float | None = None
    latency_p10_ms: float | None = None
    latency_p90_ms: float | None = None
    samples: int = 0
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    theoretical_speedup: float | None = None
    size_ratio: float | None = None
    top1: float | None = None
    delta_top1: float | None = None
    verify_err: float | None = None
    sparse_kernel_ran: bool | None = None  # None: the format has no sparse kernel to look for
    converted_layers: int | None = None  # layers the format converted (when it has a kernel)
    sparse_kernel_layers: int | None = None  # how many of them ran a sparse kernel
    kernels: dict[str, Any] | None = None
    empty_layers: list[str] | None = None  # dense rows: layers whose weights are all zero
    constant_outputs: bool | None = None  # dense rows: same output for every verify input
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model} {self.format}/{self.runtime}"

    @property
    def measured(self) -> bool:
        return self.unavailable is None and self.speedup is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareRow:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class CompareReport:
    """A comparison run: environment, configuration, one row per variant, advice and plots."""

    environment: dict[str, Any]
    config: dict[str, Any]
    rows: list[CompareRow]
    advice: str = ""
    plots: list[str] = field(default_factory=list)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, schema first."""
        rows = [asdict(r) for r in self.rows]
        return envelope(self.schema, self.environment, self.config, rows=rows,
                        advice=self.advice, plots=self.plots)  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareReport:
        """Rebuild a report from JSON; refuses other schemas."""
        data = read_envelope(data, SCHEMA, "compare")
        rows = [CompareRow.from_dict(r) for r in data["rows"]]
        return cls(data["environment"], data["config"], rows, data.get("advice", ""),
                   list(data.get("plots", [])))  # fmt: skip
