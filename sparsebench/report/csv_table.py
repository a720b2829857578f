"""CSV: one flat line per profiled row (the JSON keeps the raw samples)."""

from __future__ import annotations

import csv
import io

from ..results import Report

FIELDS = [
    "model", "format", "runtime", "device", "batch_size", "threads", "params", "nonzero_params",
    "sparsity_pct", "size_mb", "macs_m", "effective_macs_m", "peak_mem_mb", "avg_mem_mb",
    "latency_median_ms", "latency_mean_ms", "latency_p90_ms", "latency_p99_ms", "latency_std_ms",
    "latency_cv", "latency_samples", "throughput", "energy_mj", "energy_method", "top1", "top5",
    "stored_mb", "verify_max_rel_err", "sparse_kernel_ran",
]  # fmt: skip


def render_csv(report: Report) -> str:
    """A header line and one line per row; unavailable figures are empty cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in report.results:
        lat = row.latency_ms
        flat = {k: getattr(row, k) for k in FIELDS if hasattr(row, k)}
        flat.update(
            latency_median_ms=lat.median,
            latency_mean_ms=lat.mean,
            latency_p90_ms=lat.p90,
            latency_p99_ms=lat.p99,
            latency_std_ms=lat.std,
            latency_cv=lat.cv,
            latency_samples=len(lat.samples),
            verify_max_rel_err=(row.verification or {}).get("max_rel_err"),
            sparse_kernel_ran=(row.kernels or {}).get("sparse_kernel_ran"),
        )
        writer.writerow({k: "" if v is None else v for k, v in flat.items()})
    return buffer.getvalue()
