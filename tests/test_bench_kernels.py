"""The kernel benchmark's plumbing on a tiny stack (its figures are in docs/, not asserted)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sparsebench.bench.kernels import (
    INT8,
    KernelReport,
    KernelWorkload,
    last_level_cache,
    render_kernels,
    run_workload,
)
from sparsebench.cli import app
from sparsebench.measure.interleaved import TimingConfig


def test_every_candidate_is_verified_then_timed_with_its_bytes_and_bound():
    pytest.importorskip("numba", reason="the kernels extra (numba) is not installed")
    timing = TimingConfig(rounds=2, block_seconds=0.0, block_iters=1, warmup=1)
    workload = KernelWorkload(64, 2, 0.75, layers=2, int8=True)
    rows, alone = run_workload(workload, timing, threads=1, llc=2**20, bandwidth=1e10)
    by_name = {row.candidate: row for row in rows}
    assert set(by_name) == {"dense torch", "dense onnxruntime", "torch csr",
                            "bitmask (sparsebench)", INT8}  # fmt: skip
    assert alone > 0
    for row in rows:
        assert not row.unavailable, row.unavailable
        assert row.layers == 2 and row.median_ms > 0 and row.speedup > 0
        assert row.bound_ms == pytest.approx(row.weight_bytes / 1e10 * 1e3)
    assert by_name["dense torch"].weight_bytes == 2 * 4 * 64 * 64
    assert by_name["bitmask (sparsebench)"].weight_bytes < by_name["torch csr"].weight_bytes
    assert by_name["dense torch"].max_abs_err == 0.0
    assert by_name["bitmask (sparsebench)"].max_abs_err < 1e-4
    text = render_kernels(KernelReport(rows, 10.0, 2**20, "test", 1, {workload.label: alone}))
    assert text.count(workload.label) == len(rows) + 1  # each row and the alone/interleaved one


def test_the_stack_is_sized_beyond_twice_the_cache_and_the_cache_is_read():
    from sparsebench.bench.kernels import _bitmask_bytes, _layers_needed

    llc, source = last_level_cache()
    assert llc > 0 and source
    workload = KernelWorkload(4096, 1, 0.95)
    layers = _layers_needed(workload, 32 * 2**20)
    nnz = int(4096 * 4096 * 0.05)
    assert (layers - 1) * _bitmask_bytes(4096, nnz) > 2 * 32 * 2**20


@pytest.mark.parametrize("option", [["--device", "cuda"], ["--rounds", "0"]])
def test_the_kernel_benchmark_refuses_bad_options_in_one_line(option):
    result = CliRunner().invoke(app, ["bench-formats", "--kernels", *option])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
