"""Decide what regressed: latency by a confidence interval on the slowdown, the rest exactly.

Latency. Each round gives one ratio per entry: the entry's fastest call in its block over the
reference's fastest call in the same round (contention only ever adds time, so a block's
minimum is the estimate it disturbs least). The slowdown is median(current ratios) /
median(baseline ratios), with a percentile-bootstrap confidence interval (scipy.stats) over
both sets of rounds. With the threshold `max_slowdown`:

- regression: the whole interval lies above the threshold;
- pass: the whole interval lies at or below it;
- inconclusive: the interval straddles it, or the run's noise floor (the robust spread, across
  rounds, of the reference timed against its own second copy) is above `max_noise`, so the run
  could not tell.

A run that is not a pass is re-measured once (the confirmation run, only the suspected
entries); the confirmation decides. Deterministic figures: state size, MACs and non-zero
parameters may not grow; top-1 accuracy may not drop by more than `accuracy_points`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SparsebenchError
from .profile import Thresholds

PASS, REGRESSION, INCONCLUSIVE = "pass", "regression", "inconclusive"
BOOTSTRAP_RESAMPLES = 2000
MIN_ROUNDS = 5
QUIET_TOLERANCE = 0.05  # a quiet round's reference is within 5 % of the run's fastest decile
MIN_QUIET = 10  # fewer quiet rounds than this make a run inconclusive


def quiet_rounds(
    reference_pairs: list[list[float]],
    tolerance: float = QUIET_TOLERANCE,
    ceiling: float | None = None,
) -> list[bool]:
    """Which rounds ran undisturbed: both reference minima within `tolerance` of the 10th
    percentile of all reference minima of the run, and at most `ceiling` (ms) when given.

    On these shared VMs the machine switches for seconds at a time into states where every
    call is 1.5-1.7x slower, by a different factor for each workload (measured: the reference
    x1.7, a batch-32 MLP x1.5, a small CNN x1.9), so no ratio cancels them; a block minimum
    cannot escape them either. Comparing only rounds in the run's fastest state can. A run
    spent wholly in the slow state has no fast rounds to find; `ceiling` (from the baseline's
    reference, on the same CPU) keeps its rounds from counting as quiet."""
    values = sorted(v for pair in reference_pairs for v in pair)
    if not values:
        return []
    limit = values[int(0.1 * (len(values) - 1))] * (1 + tolerance)
    if ceiling is not None:
        limit = min(limit, ceiling)
    return [0 < min(pair) and max(pair) <= limit for pair in reference_pairs]


def robust_spread(values: list[float]) -> float:
    """1.4826 * MAD / median: the relative standard deviation for normal data, unmoved by a
    few bursts (infinite for fewer than 2 values)."""
    if len(values) < 2:
        return math.inf
    median = statistics.median(values)
    if median <= 0:
        return math.inf
    mad = statistics.median(abs(value - median) for value in values)
    return 1.4826 * mad / median


def _select(pairs: list[list[float]], quiet: list[bool] | None) -> list[list[float]]:
    return [pair for pair, keep in zip(pairs, quiet or [True] * len(pairs), strict=True) if keep]


def noise_floor(reference_pairs: list[list[float]], quiet: list[bool] | None = None) -> float:
    """The run's noise floor: robust spread of the reference over its own copy, across the
    compared (quiet) rounds: an A/A comparison, what the ratio method leaves of the noise."""
    return robust_spread([a / b for a, b in _select(reference_pairs, quiet) if a > 0 and b > 0])


def reference_spread(reference_pairs: list[list[float]]) -> float:
    """How much the machine's speed itself moved across all rounds."""
    return robust_spread([a for a, _ in reference_pairs])


def reference_ms(reference_pairs: list[list[float]], quiet: list[bool] | None = None) -> float:
    """The reference's typical time in the compared rounds (all rounds if none was quiet)."""
    chosen = _select(reference_pairs, quiet) or reference_pairs
    return statistics.median((a + b) / 2 for a, b in chosen)


def _ratio_of_medians(current, baseline, axis=-1):
    return np.median(current, axis=axis) / np.median(baseline, axis=axis)


def slowdown_interval(
    baseline: list[float], current: list[float], confidence: float
) -> tuple[float, float, float]:
    """(factor, low, high): median ratio current/baseline and its bootstrap interval.

    Seeded, so the same samples always give the same interval."""
    from scipy.stats import bootstrap

    if len(baseline) < MIN_ROUNDS or len(current) < MIN_ROUNDS:
        raise SparsebenchError(
            f"latency comparison needs at least {MIN_ROUNDS} rounds on each side"
        )
    factor = float(_ratio_of_medians(np.asarray(current), np.asarray(baseline)))
    if min(baseline) == max(baseline) and min(current) == max(current):
        return factor, factor, factor  # no spread at all: the interval is the point
    result = bootstrap(
        (np.asarray(current), np.asarray(baseline)),
        _ratio_of_medians,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(0),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        low = high = factor
    return factor, min(low, factor), max(high, factor)


@dataclass(frozen=True)
class LatencyVerdict:
    """Baseline vs current per-round ratios: the slowdown, its interval and the decision."""

    baseline_median: float
    current_median: float
    low: float
    high: float
    max_slowdown: float
    confidence: float
    noisy: bool = False  # the run's noise floor was above the limit

    @property
    def factor(self) -> float:
        return self.current_median / self.baseline_median

    @property
    def status(self) -> str:
        if self.noisy:
            return INCONCLUSIVE
        if self.low > self.max_slowdown:
            return REGRESSION
        if self.high <= self.max_slowdown:
            return PASS
        return INCONCLUSIVE

    @property
    def regressed(self) -> bool:
        return self.status == REGRESSION


def latency_verdict(
    baseline: list[float], current: list[float], thresholds: Thresholds, noisy: bool = False
) -> LatencyVerdict:
    """Compare per-round ratios (see the module docstring for the rule)."""
    factor, low, high = slowdown_interval(baseline, current, thresholds.confidence)
    base, cur = statistics.median(baseline), statistics.median(current)
    return LatencyVerdict(base, cur, low, high, thresholds.max_slowdown, thresholds.confidence,
                          noisy)  # fmt: skip


def confirm(first: str, second: str | None) -> str:
    """The final status of an entry: a pass stands; otherwise the confirmation run decides."""
    if first == PASS or second is None:
        return first
    return second


@dataclass(frozen=True)
class Finding:
    """One compared figure of one model, as a table row.

    `first` is the status of the first measurement when a confirmation run re-measured it."""

    model: str
    metric: str
    baseline: str
    current: str
    change: str
    threshold: str
    status: str
    interval: str = ""
    first: str | None = None

    @property
    def regressed(self) -> bool:
        return self.status == REGRESSION

    @property
    def inconclusive(self) -> bool:
        return self.status == INCONCLUSIVE

    @property
    def key(self) -> str:
        return f"{self.model} {self.metric}"

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def latency_metric(batch: str) -> str:
    return f"latency/ref b={batch}"


def latency_finding(name: str, batch: str, verdict: LatencyVerdict, first: str | None = None):
    """The table row of one latency comparison."""
    return Finding(
        name,
        latency_metric(batch),
        f"{verdict.baseline_median:.3f}",
        f"{verdict.current_median:.3f}",
        f"x{verdict.factor:.3f}",
        f"<=x{verdict.max_slowdown:g}",
        verdict.status,
        f"[{verdict.low:.3f}, {verdict.high:.3f}]",
        first,
    )


def latency_findings(baseline, current, thresholds: Thresholds, noisy: bool) -> list[Finding]:
    """One Finding per model and batch size of `current` (a measurement's `models`); the
    baseline covers them (`baseline.check_covers` ran before anything was built)."""
    findings = []
    for name, cur in current.items():
        base = _baseline_model(baseline, name)
        for batch, timed in cur["latency"].items():
            old, new = base["latency"][batch]["ratios"], timed["ratios"]
            if min(len(old), len(new)) < MIN_ROUNDS:
                findings.append(_too_few(name, batch, old, new, thresholds))
                continue
            findings.append(latency_finding(name, batch, latency_verdict(old, new, thresholds,
                                                                         noisy)))  # fmt: skip
    return findings


def _too_few(name: str, batch: str, old: list[float], new: list[float], thresholds) -> Finding:
    """An inconclusive row: too few quiet rounds on one side to compare at all."""

    def median(values):
        return f"{statistics.median(values):.3f}" if values else "n/a"

    return Finding(name, latency_metric(batch), median(old), median(new), "n/a",
                   f"<=x{thresholds.max_slowdown:g}", INCONCLUSIVE,
                   f"n/a ({len(new)} quiet rounds, {len(old)} in the baseline)")  # fmt: skip


def _baseline_model(baseline: dict[str, Any], name: str) -> dict[str, Any]:
    base = baseline["models"].get(name)
    if base is None:
        raise SparsebenchError(
            f"baseline has no model '{name}'; run with --update-baseline to record it"
        )
    return base


def _status(bad: bool) -> str:
    return REGRESSION if bad else PASS


def _exact_findings(name, base, cur) -> list[Finding]:
    findings = []
    for metric in ("state_bytes", "macs_dense", "macs_effective", "nonzero_params"):
        old, new = base.get(metric), cur[metric]
        if old is None:
            continue
        change = f"{new - old:+d}" if new != old else "0"
        findings.append(
            Finding(name, metric, str(old), str(new), change, "no growth", _status(new > old))
        )
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
            _status(drop > thresholds.accuracy_points + 1e-9),
        )
    ]


def static_findings(baseline: dict[str, Any], current: dict[str, Any], thresholds) -> list:
    """The deterministic figures of every model in `current` (a measurement's `models`)."""
    findings: list[Finding] = []
    for name, cur in current.items():
        base = _baseline_model(baseline, name)
        findings += _exact_findings(name, base, cur)
        findings += _accuracy_finding(name, base, cur, thresholds)
    return findings
