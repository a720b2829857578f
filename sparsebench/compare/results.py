"""Comparison results as plain dataclasses; their versioned JSON is what reports render."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..results import envelope, read_envelope

SCHEMA = "sparsebench.compare/v1"


@dataclass
class CompareRow:
    """One (checkpoint, format, runtime) variant: static figures, timing and the ratios.

    `speedup*` are the median and p10/p90 of per-round ratios (baseline round median / variant
    round median) from one interleaved run of all variants; > 1 means faster than dense.
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
    kernels: dict[str, Any] | None = None

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
