"""`sparsebench check`: a CI latency gate that compares ratios to an in-run reference.

A profile (TOML) lists models, batch sizes and thresholds; a baseline (JSON) holds the
per-round latency ratios model/reference and the deterministic figures of an earlier run.
"""

from .baseline import read_baseline, write_baseline
from .decision import Finding, LatencyVerdict, compare, latency_verdict
from .measure import measure_profile
from .profile import CheckProfile, ModelEntry, Thresholds, Timing, load_profile

__all__ = [
    "CheckProfile",
    "Finding",
    "LatencyVerdict",
    "ModelEntry",
    "Thresholds",
    "Timing",
    "compare",
    "latency_verdict",
    "load_profile",
    "measure_profile",
    "read_baseline",
    "write_baseline",
]
