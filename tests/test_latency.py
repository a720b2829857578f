"""Latency statistics and the timing loop on synthetic workloads."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from sparsebench.errors import SparsebenchError
from sparsebench.measure.latency import LatencyConfig, measure_latency, spread_warning
from sparsebench.results import LatencyStats


def test_statistics_match_numpy():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 2.5]
    stats = LatencyStats.from_samples(samples)
    assert stats.median == pytest.approx(np.median(samples))
    assert stats.mean == pytest.approx(np.mean(samples))
    assert stats.p90 == pytest.approx(np.percentile(samples, 90))
    assert stats.p99 == pytest.approx(np.percentile(samples, 99))
    assert stats.std == pytest.approx(np.std(samples, ddof=1))
    assert stats.cv == pytest.approx(np.std(samples, ddof=1) / np.mean(samples))
    assert stats.samples == samples and stats.min == 1.0 and stats.max == 10.0


def test_single_sample_has_no_spread():
    stats = LatencyStats.from_samples([2.0])
    assert (stats.median, stats.p99, stats.std, stats.cv) == (2.0, 2.0, 0.0, 0.0)


def test_empty_samples_are_refused():
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])


def test_sleep_workload_is_timed_in_milliseconds():
    config = LatencyConfig(warmup=1, min_iters=5, min_seconds=0.0)
    stats = measure_latency(lambda: time.sleep(0.01), config=config)
    assert len(stats.samples) == 5
    assert stats.median >= 9.5  # sleep never returns early (no upper bound: a loaded machine)


def test_loop_runs_at_least_min_seconds_and_min_iters():
    calls = []
    config = LatencyConfig(warmup=3, min_iters=2, min_seconds=0.05)
    start = time.perf_counter()
    stats = measure_latency(lambda: calls.append(time.sleep(0.001)), config=config)
    assert time.perf_counter() - start >= 0.05
    assert len(calls) == 3 + len(stats.samples)
    assert len(stats.samples) >= 2


def test_high_spread_is_warned_about():
    steady = LatencyStats.from_samples([1.0, 1.01, 0.99, 1.0])
    noisy = LatencyStats.from_samples([1.0, 3.0, 0.5, 2.0])
    assert spread_warning(steady) is None
    assert "spread is high" in spread_warning(noisy)
    assert statistics.stdev([1.0, 3.0, 0.5, 2.0]) > 0.1


def test_invalid_config_is_refused():
    with pytest.raises(SparsebenchError, match="--min-iters >= 1"):
        LatencyConfig(min_iters=0)
