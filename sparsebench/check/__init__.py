"""`sparsebench check`: a CI latency gate that compares ratios to an in-run reference.

A profile (TOML) lists models, batch sizes and thresholds; a baseline (JSON) holds the
per-round latency ratios model/reference and the deterministic figures of an earlier run.
`run_check` decides pass, regression or inconclusive (see `decision.py`).
"""

from .baseline import read_baseline, write_baseline
from .decision import (
    INCONCLUSIVE,
    PASS,
    REGRESSION,
    Finding,
    LatencyVerdict,
    confirm,
    latency_verdict,
    noise_floor,
    slowdown_interval,
)
from .measure import build_models, measure_built, time_entries
from .profile import CheckProfile, ModelEntry, Thresholds, Timing, load_profile
from .run import CheckResult, Confirmation, record_baseline, run_check

__all__ = [
    "INCONCLUSIVE",
    "PASS",
    "REGRESSION",
    "CheckProfile",
    "CheckResult",
    "Confirmation",
    "Finding",
    "LatencyVerdict",
    "ModelEntry",
    "Thresholds",
    "Timing",
    "build_models",
    "confirm",
    "latency_verdict",
    "load_profile",
    "measure_built",
    "noise_floor",
    "read_baseline",
    "record_baseline",
    "run_check",
    "slowdown_interval",
    "time_entries",
    "write_baseline",
]
