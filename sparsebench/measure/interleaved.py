"""Interleaved timing of several variants, so machine drift hits all of them alike.

Each round times every variant for a short block, in an order that rotates from round to
round. Speedups are ratios of per-round medians measured side by side; their spread over the
rounds shows how much the noisy machine can be trusted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..options import check_count, check_seconds
from ..results import percentile
from .latency import LatencyConfig, measure_latency


@dataclass
class SpeedupStats:
    """Speedup of a variant over a baseline: median and range of per-round ratios."""

    median: float
    low: float  # 10th percentile of per-round ratios
    high: float  # 90th percentile
    rounds: int


@dataclass
class Comparison:
    """Per-call samples (ms) of each variant, grouped by round."""

    rounds: dict[str, list[list[float]]] = field(default_factory=dict)

    def samples(self, name: str) -> list[float]:
        return [s for block in self.rounds[name] for s in block]

    def median_ms(self, name: str) -> float:
        return statistics.median(self.samples(name))

    def speedup(self, name: str, baseline: str) -> SpeedupStats:
        """How many times faster `name` is than `baseline` (>1 means faster)."""
        ratios = sorted(
            statistics.median(base) / statistics.median(mine)
            for base, mine in zip(self.rounds[baseline], self.rounds[name], strict=True)
        )
        return SpeedupStats(
            median=statistics.median(ratios),
            low=percentile(ratios, 10),
            high=percentile(ratios, 90),
            rounds=len(ratios),
        )


@dataclass(frozen=True)
class TimingConfig:
    """How every command times side by side: `warmup` calls per variant, then `rounds`
    rotating rounds of at least `block_iters` calls and `block_seconds` per variant.

    The one timing configuration of `profile` (several files), `compare`, `check` and
    `bench-formats`; each command chooses its defaults and exposes them as its own flags.
    """

    names = ""  # what the fields are called in error messages ("timing." in a check profile)
    rounds: int = 5
    block_seconds: float = 0.2
    block_iters: int = 3
    warmup: int = 2
    settle_seconds: float = 0.0  # pause after each block, so its thread pool is idle again

    def __post_init__(self):
        check_count(f"{self.names}rounds", self.rounds, 1)
        check_seconds(f"{self.names}block_seconds", self.block_seconds, allow_zero=True)
        check_count(f"{self.names}block_iters", self.block_iters, 1)
        check_count(f"{self.names}warmup", self.warmup, 0)
        check_seconds(f"{self.names}settle_seconds", self.settle_seconds, allow_zero=True)


def time_interleaved(
    variants: dict[str, Callable[[], object]],
    timing: TimingConfig | None = None,
    device: str = "cpu",
    offset: int = 0,
) -> Comparison:
    """Time every variant in `timing.rounds` rotating rounds (see `TimingConfig`); `offset`
    continues the rotation of an earlier call (the number of rounds it timed)."""
    timing = timing or TimingConfig()
    names = list(variants)
    for name in names:
        for _ in range(timing.warmup):
            variants[name]()
    block = LatencyConfig(warmup=0, min_iters=timing.block_iters, min_seconds=timing.block_seconds)
    comparison = Comparison({name: [] for name in names})
    for index in range(timing.rounds):
        shift = (index + offset) % len(names)
        for name in names[shift:] + names[:shift]:
            stats = measure_latency(variants[name], device, block)
            comparison.rounds[name].append(stats.samples)
            if timing.settle_seconds:
                time.sleep(timing.settle_seconds)
    return comparison
