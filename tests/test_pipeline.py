"""One pipeline: profile, compare, check and bench-formats report the same static figures.

The figures that do not depend on timing (MACs, parameters, sparsity, sizes) come from the
same code for every command, so they must agree on one checkpoint, and match the course
assignment's VGG16-BN MACs (314.002 M on CIFAR-10) that the profiler reproduced before the
commands shared one pipeline.
"""

from __future__ import annotations

import pytest
import torch

from sparsebench import load
from sparsebench.check.measure import static_figures as check_figures
from sparsebench.compare import CompareConfig, compare
from sparsebench.measure.latency import LatencyConfig
from sparsebench.measure.threads import fixed_threads
from sparsebench.profiler import ProfileConfig, profile
from sparsebench.prune import magnitude_prune_
from sparsebench.zoo import create_model

FAST_LATENCY = LatencyConfig(warmup=1, min_iters=3, min_seconds=0.0)
FAST_COMPARE = dict(rounds=2, block_seconds=0.0, block_iters=2, warmup=1)


@pytest.fixture(scope="module")
def vgg_state(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("vgg16_bn").eval()
    magnitude_prune_(model, 0.8, scope="layer")
    path = tmp_path_factory.mktemp("vgg") / "vgg.pt"
    torch.save(model.state_dict(), path)
    return path


def test_profile_compare_and_check_agree_on_static_figures(vgg_state):
    from sparsebench import LoadOptions

    options = LoadOptions(arch="vgg16_bn")
    config = ProfileConfig(latency=FAST_LATENCY, memory=False, energy=False)
    row = profile([vgg_state], config, options).results[0]
    dense = compare([vgg_state], CompareConfig(formats=("dense",), **FAST_COMPARE), options).rows[0]
    figures = check_figures(load(vgg_state, options), None)
    assert round(row.macs_m, 3) == 314.002  # the assignment's VGG16-BN figure, reproduced
    assert dense.macs_m == pytest.approx(row.macs_m)
    assert figures["macs_dense"] / 1e6 == pytest.approx(row.macs_m)
    assert dense.effective_macs_m == pytest.approx(row.effective_macs_m)
    assert figures["macs_effective"] / 1e6 == pytest.approx(row.effective_macs_m)
    assert dense.sparsity_pct == pytest.approx(row.sparsity_pct)
    assert figures["sparsity_pct"] == pytest.approx(row.sparsity_pct)
    assert row.sparsity_pct == pytest.approx(80.0, abs=0.5)


def test_bench_formats_runs_the_same_formats_and_verification():
    from sparsebench.bench.formats import SweepConfig, run_sweep

    sweep = SweepConfig(sparsities=(0.8,), linear_sizes=(64,), batches=(1,), formats=("csr",),
                        vgg=False, rounds=1, block_seconds=0.0)  # fmt: skip
    rows = run_sweep(sweep)
    assert [r.format for r in rows] == ["csr"] and rows[0].unavailable is None
    assert rows[0].sparsity_pct == pytest.approx(80.0, abs=1.0)


def test_fixed_threads_restores_the_previous_count():
    before = torch.get_num_threads()
    with fixed_threads(1) as inside:
        assert inside == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), fixed_threads(1):
        raise RuntimeError("a failed measurement")
    assert torch.get_num_threads() == before
