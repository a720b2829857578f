"""Measurement results as plain dataclasses; their versioned JSON is the source of truth.

Units: sizes and memory in MB = 2**20 bytes (MiB, the unit behind the assignment's 58.25 MB
VGG16-BN), MACs in millions (10**6), latency in milliseconds, energy in millijoules.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA = "sparsebench.profile/v1"
MB = 2**20


def envelope(schema: str, environment: dict, config: dict, **body: Any) -> dict[str, Any]:
    """The one JSON layout of every sparsebench document: schema first, then the run's
    environment and configuration, then its rows (profile, compare and check alike)."""
    return {"schema": schema, "environment": environment, "config": config, **body}


def read_envelope(data: Any, schema: str, what: str) -> dict[str, Any]:
    """`data` if it is a `schema` document; ValueError naming what was found otherwise."""
    found = data.get("schema") if isinstance(data, dict) else type(data).__name__
    if found != schema:
        raise ValueError(f"unsupported {what} schema {found!r} (want {schema})")
    return data


@dataclass
class LatencyStats:
    """Per-batch latency in ms, with the raw samples it was computed from."""

    median: float
    mean: float
    p90: float
    p99: float
    std: float
    cv: float
    samples: list[float] = field(default_factory=list)
    min: float = 0.0
    max: float = 0.0

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> LatencyStats:
        """Summarise raw samples (at least one) into median, mean, percentiles and spread."""
        if not samples_ms:
            raise ValueError("latency needs at least one sample")
        ordered = sorted(samples_ms)
        mean = statistics.fmean(ordered)
        std = statistics.stdev(ordered) if len(ordered) > 1 else 0.0
        return cls(
            median=statistics.median(ordered),
            mean=mean,
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            std=std,
            cv=std / mean if mean > 0 else 0.0,
            samples=list(samples_ms),
            min=ordered[0],
            max=ordered[-1],
        )


def percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class MemoryResult:
    """Peak and average memory over the inference window (MB), or why it is unavailable.

    `baseline_mb` is what the process (CPU: RSS) or allocator (CUDA) held after the model was
    built and warmed up, before the window; `peak_increase_mb` and `avg_increase_mb` are the
    peak and average over it, what inference added. Results read from JSON written before those
    two fields existed get them derived from the absolute figures and the baseline.
    """

    peak_mb: float | None
    avg_mb: float | None
    baseline_mb: float | None = None
    method: str = ""
    samples: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    unavailable_reason: str | None = None
    peak_increase_mb: float | None = None
    avg_increase_mb: float | None = None

    def __post_init__(self) -> None:
        if self.baseline_mb is not None:
            if self.peak_increase_mb is None and self.peak_mb is not None:
                self.peak_increase_mb = self.peak_mb - self.baseline_mb
            if self.avg_increase_mb is None and self.avg_mb is not None:
                self.avg_increase_mb = self.avg_mb - self.baseline_mb


@dataclass
class EnergyResult:
    """Energy per inference (mJ), with the idle power subtracted, or why it is unavailable.

    An "inference" here is one call of the measured function, a forward pass of the whole
    batch: `inferences` counts those calls in the window (each of `batch_size` samples) and
    `mj_per_inference` is per call. `avg_power_w` is the window's joules over its seconds
    (idle included; the same figure as `active_power_w`). `implied_mj` is what the latency
    step implies per call, (avg_power_w - idle_power_w) x latency median, comparable with
    `mj_per_inference`; `warnings` says when they disagree, or when the window was cut short.
    """

    mj_per_inference: float | None
    method: str
    idle_power_w: float | None = None
    active_power_w: float | None = None
    window_s: float | None = None
    inferences: int = 0
    is_estimate: bool = False
    unavailable_reason: str | None = None
    batch_size: int = 1
    avg_power_w: float | None = None
    implied_mj: float | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ProfileRow:
    """One profiled (model, format, runtime, device, batch size): every figure of the tables."""

    model: str
    format: str
    runtime: str
    device: str
    batch_size: int
    input_shape: list[int]
    params: int
    nonzero_params: int
    sparsity_pct: float
    prunable_params: int
    size_mb: float | None
    size_source: str
    macs_m: float
    effective_macs_m: float
    peak_mem_mb: float | None
    avg_mem_mb: float | None
    latency_ms: LatencyStats
    throughput: float
    energy_mj: float | None
    energy_method: str
    top1: float | None = None
    top5: float | None = None
    source: str | None = None
    source_kind: str | None = None
    threads: int | None = None
    memory: MemoryResult | None = None
    energy: EnergyResult | None = None
    accuracy: dict[str, Any] | None = None
    per_layer: list[dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)
    verification: dict[str, Any] | None = None
    stored_mb: float | None = None  # weights as the format stores them (values + indices ...)
    kernels: dict[str, Any] | None = None  # measure/kernels.py: did the sparse kernels run?
    runtime_options: dict[str, Any] | None = None  # e.g. ONNX Runtime providers and threads
    inputs: list[dict[str, Any]] | None = None  # `InputSpecs.to_json()`: names, shapes, dtypes
    flags: dict[str, Any] = field(default_factory=dict)  # e.g. empty_layers, constant_outputs

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileRow:
        """Rebuild a row from its JSON form (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["latency_ms"] = LatencyStats(**kwargs["latency_ms"])
        if kwargs.get("memory") is not None:
            kwargs["memory"] = MemoryResult(**kwargs["memory"])
        if kwargs.get("energy") is not None:
            kwargs["energy"] = EnergyResult(**kwargs["energy"])
        return cls(**kwargs)


@dataclass
class Report:
    """A profiling run: environment, configuration, one row per profiled model, and the
    files that could not be profiled with their one-line errors (`failures`)."""

    environment: dict[str, Any]
    config: dict[str, Any]
    results: list[ProfileRow]
    schema: str = SCHEMA
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, schema first."""
        rows = [asdict(r) for r in self.results]
        return envelope(self.schema, self.environment, self.config, results=rows,
                        failures=self.failures)  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from JSON; refuses other schemas."""
        data = read_envelope(data, SCHEMA, "report")
        rows = [ProfileRow.from_dict(r) for r in data["results"]]
        return cls(data["environment"], data["config"], rows, failures=data.get("failures", []))
