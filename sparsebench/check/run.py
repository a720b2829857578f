"""One check: measure a profile, decide against its baseline, confirm what looks wrong.

`run_check` is what `sparsebench check` calls; `record_baseline` is `--update-baseline`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import load_dataset
from ..measure.threads import fixed_threads
from .baseline import check_covers, read_baseline, write_baseline
from .decision import (
    INCONCLUSIVE,
    MIN_QUIET,
    PASS,
    REGRESSION,
    Finding,
    confirm,
    latency_findings,
    latency_metric,
    noise_floor,
    reference_ms,
    reference_spread,
    static_findings,
)
from .machine import cpu_differences, cpu_identity
from .measure import build_models, measure_built, time_entries
from .profile import CheckProfile

RESULT_SCHEMA = "sparsebench.check-result/v1"
EXIT_CODES = {PASS: 0, REGRESSION: 1, INCONCLUSIVE: 3}


@dataclass
class Noise:
    """How trustworthy one timing pass was, and why not when it was not."""

    floor: float  # A/A spread of the reference over the compared rounds
    quiet: int  # rounds compared (the quiet ones)
    rounds: int  # rounds timed
    spread: float  # how much the machine's speed moved across all rounds
    speed: float | None  # reference time now / at the baseline (same CPU only)
    reasons: list[str] = field(default_factory=list)

    @property
    def noisy(self) -> bool:
        return bool(self.reasons)

    def text(self) -> str:
        speed = "" if self.speed is None else f", reference x{self.speed:.2f} vs the baseline"
        return (
            f"noise floor {self.floor:.1%} over {self.quiet} quiet of {self.rounds} rounds "
            f"(machine speed moved {self.spread:.1%} across rounds{speed})"
        )

    def to_json(self) -> dict[str, Any]:
        return {"floor": _finite(self.floor), "quiet_rounds": self.quiet, "rounds": self.rounds,
                "speed_spread": _finite(self.spread), "speed_vs_baseline": _finite(self.speed),
                "reasons": self.reasons}  # fmt: skip


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: a spread over fewer than 2 rounds is null."""
    return value if value is not None and math.isfinite(value) else None


def assess_noise(timed: dict[str, Any], profile: CheckProfile, baseline_ref: float | None):
    """The noise of one timing pass against the profile's limits (see `decision.py`).

    `baseline_ref` is the baseline's reference time when it was recorded on this kind of CPU;
    the reference now over it is reported with the reasons."""
    thresholds = profile.thresholds
    pairs, quiet = timed["reference_minima_ms"], timed["quiet"]
    floor = noise_floor(pairs, quiet)
    speed = reference_ms(pairs, quiet) / baseline_ref if baseline_ref else None
    noise = Noise(floor, sum(quiet), len(pairs), reference_spread(pairs), speed)
    needed = min(MIN_QUIET, profile.timing.rounds)
    if noise.quiet < needed:
        slower = ""
        if speed is not None and speed > thresholds.max_slowdown:
            slower = f"; the reference ran x{speed:.2f} slower than when the baseline was recorded"
        noise.reasons.append(
            f"only {noise.quiet} of {noise.rounds} rounds were quiet (need {needed}){slower}"
        )
    if math.isfinite(floor) and floor > thresholds.noise_limit:
        noise.reasons.append(f"noise floor {floor:.1%} is above {thresholds.noise_limit:.1%}")
    return noise


@dataclass
class Confirmation:
    """The re-run of the suspected latency entries: which, its noise, what it decided."""

    entries: list[str]
    noise: Noise
    outcomes: dict[str, list[str]] = field(default_factory=dict)  # key: [first, final]

    def text(self) -> str:
        parts = [f"{key}: {first} -> {final}" for key, (first, final) in self.outcomes.items()]
        plural = "entry" if len(self.entries) == 1 else "entries"
        return f"re-ran {len(self.entries)} suspected {plural} ({self.noise.text()}): " + "; ".join(
            parts
        )


@dataclass
class CheckResult:
    """Everything a check decided, for the terminal, the step summary and `--json`."""

    profile: str
    baseline: str
    findings: list[Finding]
    noise: Noise
    noise_limit: float
    max_slowdown: float
    confidence: float
    confirmation: Confirmation | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        statuses = {finding.status for finding in self.findings}
        for status in (REGRESSION, INCONCLUSIVE):
            if status in statuses:
                return status
        return PASS

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def final_noise(self) -> Noise:
        return self.confirmation.noise if self.confirmation else self.noise

    def to_json(self) -> dict[str, Any]:
        confirmation = None
        if self.confirmation is not None:
            confirmation = {
                "entries": self.confirmation.entries,
                "noise": self.confirmation.noise.to_json(),
                "outcomes": self.confirmation.outcomes,
            }
        return {
            "schema": RESULT_SCHEMA,
            "profile": self.profile,
            "baseline": self.baseline,
            "status": self.status,
            "exit_code": self.exit_code,
            "noise_floor": _finite(self.noise.floor),
            "noise": self.noise.to_json(),
            "noise_limit": self.noise_limit,
            "max_slowdown": self.max_slowdown,
            "confidence": self.confidence,
            "confirmation": confirmation,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 2),
            "findings": [finding.to_dict() for finding in self.findings],
        }


def machine_warnings(recorded: dict[str, Any]) -> list[str]:
    """A warning when the baseline was recorded on another kind of CPU."""
    differences = cpu_differences(recorded.get("environment", {}).get("cpu_identity"),
                                  cpu_identity())  # fmt: skip
    if not differences:
        return []
    return [
        "baseline recorded on a different machine ("
        + "; ".join(differences)
        + "): latency ratios may not transfer; record the baseline on this runner type with "
        "--update-baseline"
    ]


def _dataset(profile: CheckProfile):
    return load_dataset(profile.data, "test") if profile.data else None


def record_baseline(profile: CheckProfile, path: str | Path) -> tuple[dict[str, Any], Noise]:
    """Measure the profile; write the baseline unless the run was too noisy.

    Returns (measurement, noise); nothing is written when `noise.noisy`."""
    with fixed_threads(profile.threads):
        measurement = measure_built(profile, build_models(profile), _dataset(profile))
    noise = assess_noise(measurement, profile, None)
    measurement["noise"] = noise.to_json()
    if not noise.noisy:
        write_baseline(path, measurement)
    return measurement, noise


def _suspects(findings: list[Finding]) -> list[tuple[str, int]]:
    suspects = []
    for finding in findings:
        if finding.status != PASS and finding.metric.startswith("latency/"):
            suspects.append((finding.model, int(finding.metric.rpartition("=")[2])))
    return suspects


def _confirm(profile, built, recorded, findings: list[Finding], baseline_ref):
    """Re-time only the suspected entries; the confirmation run decides them."""
    suspects = _suspects(findings)
    rerun = time_entries(profile, built, suspects, _ceiling(profile, baseline_ref))
    noise = assess_noise(rerun, profile, baseline_ref)
    second = {
        (f.model, f.metric): f
        for f in latency_findings(recorded, rerun["models"], profile.thresholds, noise.noisy)
    }
    names = [f"{name} {latency_metric(batch)}" for name, batch in suspects]
    confirmation = Confirmation(names, noise)
    merged = []
    for finding in findings:
        again = second.get((finding.model, finding.metric))
        if again is None:
            merged.append(finding)
            continue
        final = confirm(finding.status, again.status)
        confirmation.outcomes[finding.key] = [finding.status, final]
        merged.append(Finding(**{**again.to_dict(), "status": final, "first": finding.status}))
    return merged, confirmation


def _ceiling(profile: CheckProfile, baseline_ref: float | None) -> float | None:
    """On the baseline's own CPU model a quiet round's reference may be at most `max_slowdown`
    times the baseline's: rounds in the VM's slow state never count as quiet."""
    if baseline_ref is None:
        return None
    return baseline_ref * profile.thresholds.max_slowdown


def _baseline_reference(recorded: dict[str, Any], same_cpu: bool) -> float | None:
    """The baseline's reference time over its quiet rounds, when this CPU is the same kind."""
    pairs = recorded.get("reference_minima_ms")
    if not same_cpu or not pairs:
        return None
    return reference_ms(pairs, recorded.get("quiet"))


def run_check(profile: CheckProfile, baseline_path: str | Path, confirm_run: bool = True):
    """Measure `profile`, compare with the baseline and confirm suspected latency entries."""
    start = time.perf_counter()
    recorded = read_baseline(baseline_path)
    check_covers(recorded, [m.name for m in profile.models], list(profile.batch_sizes),
                 baseline_path)  # fmt: skip
    warnings = machine_warnings(recorded)
    baseline_ref = _baseline_reference(recorded, same_cpu=not warnings)
    with fixed_threads(profile.threads):
        built = build_models(profile)
        current = measure_built(profile, built, _dataset(profile), _ceiling(profile, baseline_ref))
        noise = assess_noise(current, profile, baseline_ref)
        findings = latency_findings(recorded, current["models"], profile.thresholds, noise.noisy)
        confirmation = None
        if confirm_run and _suspects(findings):
            findings, confirmation = _confirm(profile, built, recorded, findings, baseline_ref)
    findings += static_findings(recorded, current["models"], profile.thresholds)
    order = [m.name for m in profile.models]
    findings.sort(key=lambda f: order.index(f.model))
    return CheckResult(
        profile=profile.name,
        baseline=str(baseline_path),
        findings=findings,
        noise=noise,
        noise_limit=profile.thresholds.noise_limit,
        max_slowdown=profile.thresholds.max_slowdown,
        confidence=profile.thresholds.confidence,
        confirmation=confirmation,
        warnings=warnings,
        seconds=time.perf_counter() - start,
    )
