"""Decide what regressed: latency ratios by size of change AND significance, the rest exactly.

Latency: each round's median model time over the same round's median reference time. A
regression needs both the median ratio to grow by more than `max_slowdown` and a one-sided
Mann-Whitney U test (current ratios larger than baseline ratios) with p < `alpha`.
Deterministic figures: state size, MACs and non-zero parameters may not grow; top-1 accuracy
may not drop by more than `accuracy_points`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from ..errors import SparsebenchError
from .profile import Thresholds


@dataclass(frozen=True)
class LatencyVerdict:
    """Baseline vs current per-round ratios: their medians, the factor and the p-value."""

    baseline_median: float
    current_median: float
    p_value: float
    max_slowdown: float
    alpha: float

    @property
    def factor(self) -> float:
        return self.current_median / self.baseline_median

    @property
    def regressed(self) -> bool:
        return self.factor > self.max_slowdown and self.p_value < self.alpha


def latency_verdict(
    baseline: list[float], current: list[float], max_slowdown: float, alpha: float
) -> LatencyVerdict:
    """Compare per-round ratios; p is for 'current is stochastically larger than baseline'."""
    from scipy.stats import mannwhitneyu

    if len(baseline) < 2 or len(current) < 2:
        raise SparsebenchError("latency comparison needs at least 2 rounds on each side")
    p_value = float(mannwhitneyu(current, baseline, alternative="greater").pvalue)
    return LatencyVerdict(
        statistics.median(baseline), statistics.median(current), p_value, max_slowdown, alpha
    )


@dataclass(frozen=True)
class Finding:
    """One compared figure of one model, as a table row."""

    model: str
    metric: str
    baseline: str
    current: str
    change: str
    threshold: str
    regressed: bool
    p_value: float | None = None


def _latency_findings(name, base, cur, thresholds: Thresholds) -> list[Finding]:
    findings = []
    for batch, current in cur["latency"].items():
        if batch not in base.get("latency", {}):
            raise SparsebenchError(
                f"baseline has no latency for '{name}' at batch {batch}; run --update-baseline"
            )
        verdict = latency_verdict(
            base["latency"][batch]["ratios"],
            current["ratios"],
            thresholds.max_slowdown,
            thresholds.alpha,
        )
        findings.append(
            Finding(
                name,
                f"latency/ref b={batch}",
                f"{verdict.baseline_median:.3f}",
                f"{verdict.current_median:.3f}",
                f"x{verdict.factor:.2f}",
                f">x{thresholds.max_slowdown:g} & p<{thresholds.alpha:g}",
                verdict.regressed,
                verdict.p_value,
            )
        )
    return findings


def _exact_findings(name, base, cur) -> list[Finding]:
    findings = []
    for metric in ("state_bytes", "macs_dense", "macs_effective", "nonzero_params"):
        old, new = base.get(metric), cur[metric]
        if old is None:
            continue
        change = f"{new - old:+d}" if new != old else "0"
        findings.append(Finding(name, metric, str(old), str(new), change, "no growth", new > old))
    return findings


def _accuracy_finding(name, base, cur, thresholds: Thresholds) -> list[Finding]:
    old, new = base.get("accuracy_top1"), cur.get("accuracy_top1")
    if old is None or new is None:
        return []
    drop = old - new
    return [
        Finding(
            name,
            "accuracy_top1",
            f"{old:.2f}",
            f"{new:.2f}",
            f"{new - old:+.2f}",
            f"drop<={thresholds.accuracy_points:g}",
            drop > thresholds.accuracy_points + 1e-9,
        )
    ]


def compare(baseline: dict[str, Any], current: dict[str, Any], thresholds: Thresholds) -> list:
    """Every compared figure of every model in `current`, as Findings."""
    findings: list[Finding] = []
    for name, cur in current["models"].items():
        base = baseline["models"].get(name)
        if base is None:
            raise SparsebenchError(
                f"baseline has no model '{name}'; run with --update-baseline to record it"
            )
        findings += _latency_findings(name, base, cur, thresholds)
        findings += _exact_findings(name, base, cur)
        findings += _accuracy_finding(name, base, cur, thresholds)
    return findings
