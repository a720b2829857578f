"""Interleaved timing: ratios of side-by-side medians, robust to drift."""

from __future__ import annotations

import time

import pytest

from sparsebench.errors import SparsebenchError
from sparsebench.measure.interleaved import Comparison, TimingConfig, time_interleaved


def test_speedup_is_the_ratio_of_round_medians():
    comparison = Comparison(
        {"dense": [[10.0, 10.0, 11.0], [20.0, 20.0, 20.0]], "csr": [[5.0, 5.0, 6.0], [4.0] * 3]}
    )
    stats = comparison.speedup("csr", "dense")
    assert stats.rounds == 2
    assert stats.median == pytest.approx((2.0 + 5.0) / 2)
    assert stats.low == pytest.approx(2.3) and stats.high == pytest.approx(4.7)
    assert comparison.median_ms("dense") == 15.5  # median of all six samples


def test_every_variant_is_timed_in_every_round_in_rotating_order():
    order = []
    variants = {name: (lambda n=name: order.append(n)) for name in "abc"}
    comparison = time_interleaved(
        variants, TimingConfig(3, block_seconds=0, block_iters=1, warmup=0)
    )
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(blocks) == 3 for blocks in comparison.rounds.values())


@pytest.mark.timing
def test_a_slower_variant_shows_a_speedup_below_one():
    comparison = time_interleaved(
        {"fast": lambda: time.sleep(0.001), "slow": lambda: time.sleep(0.004)},
        TimingConfig(rounds=3, block_seconds=0, block_iters=3, warmup=0),
    )
    stats = comparison.speedup("slow", "fast")
    assert stats.high < 0.8  # sleep(4 ms) is never faster than sleep(1 ms)


def test_settle_seconds_pauses_after_every_block_and_refuses_negative(monkeypatch):
    from sparsebench.measure import interleaved

    pauses = []
    monkeypatch.setattr(interleaved.time, "sleep", pauses.append)
    timing = TimingConfig(rounds=3, block_seconds=0.0, block_iters=1, warmup=0,
                          settle_seconds=0.01)  # fmt: skip
    interleaved.time_interleaved({"a": lambda: None, "b": lambda: None}, timing)
    assert pauses == [0.01] * 6
    with pytest.raises(SparsebenchError, match="settle_seconds"):
        TimingConfig(settle_seconds=-1.0)
