"""Latency of one forward pass: warm-up, then at least N iterations and at least T seconds.

CPU timings use time.perf_counter around each call; CUDA timings use CUDA events recorded
around each call and read after a final synchronise, so host overhead between calls is excluded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..options import check_count, check_seconds
from ..results import LatencyStats

HIGH_SPREAD_CV = 0.10


@dataclass(frozen=True)
class LatencyConfig:
    """How long to time: warm-up calls, then at least `min_iters` and `min_seconds`."""

    warmup: int = 10
    min_iters: int = 50
    min_seconds: float = 1.0
    max_iters: int = 100_000

    def __post_init__(self):
        rule = "latency needs --warmup >= 0, --min-iters >= 1 and a finite --min-seconds >= 0"
        check_count("--warmup", self.warmup, 0, rule=rule)
        check_count("--min-iters", self.min_iters, 1, rule=rule)
        check_seconds("--min-seconds", self.min_seconds, allow_zero=True, rule=rule)
        check_count("max_iters", self.max_iters, 1)


def _time_cpu(fn: Callable[[], object], config: LatencyConfig) -> list[float]:
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < config.max_iters and (
        len(samples) < config.min_iters or time.perf_counter() - start < config.min_seconds
    ):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def _time_cuda(fn: Callable[[], object], config: LatencyConfig) -> list[float]:
    pairs = []
    start = time.perf_counter()
    while len(pairs) < config.max_iters and (
        len(pairs) < config.min_iters or time.perf_counter() - start < config.min_seconds
    ):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        pairs.append((begin, end))
        if len(pairs) % 64 == 0:  # keep the host from racing far ahead of the GPU
            end.synchronize()
    torch.cuda.synchronize()
    return [begin.elapsed_time(end) for begin, end in pairs]


def measure_latency(
    fn: Callable[[], object], device: str = "cpu", config: LatencyConfig | None = None
) -> LatencyStats:
    """Time `fn` (one forward pass) on `device` after warm-up; returns stats over raw samples."""
    config = config or LatencyConfig()
    cuda = device.startswith("cuda")
    for _ in range(config.warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        return LatencyStats.from_samples(_time_cuda(fn, config))
    return LatencyStats.from_samples(_time_cpu(fn, config))


def spread_warning(stats: LatencyStats, threshold: float = HIGH_SPREAD_CV) -> str | None:
    """A warning when the coefficient of variation says the timing is noisy."""
    if stats.cv > threshold:
        return (
            f"latency spread is high (CV {stats.cv:.0%} > {threshold:.0%}): the machine is noisy; "
            "compare medians measured in one run, or raise --min-seconds"
        )
    return None
