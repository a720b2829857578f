"""`sparsebench compare`: variants per format, one interleaved timing run, advice, plots, CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.cli import app
from sparsebench.compare import CompareConfig, CompareReport, CompareRow, compare
from sparsebench.compare import plan as compare_plan
from sparsebench.compare import run as compare_run
from sparsebench.compare.advice import advise
from sparsebench.compare.plots import write_plots
from sparsebench.compare.render import render_markdown
from sparsebench.compare.results import ratio_text
from sparsebench.device import cuda_available
from sparsebench.errors import SparsebenchError
from sparsebench.prune import magnitude_prune_
from sparsebench.zoo import create_model

FAST = dict(rounds=2, block_seconds=0.005, block_iters=2, warmup=1)
PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def _pruned(tmp_path, arch, shape):
    torch.manual_seed(0)
    model = magnitude_prune_(create_model(arch).eval(), 0.9, scope="layer")
    path = tmp_path / f"{arch}.pt"
    save_checkpoint(path, model, CheckpointMeta(arch=arch, input_shape=list(shape)))
    return path


@pytest.fixture
def mlp_ckpt(tmp_path):
    return _pruned(tmp_path, "mnist1d_mlp", (1, 40))


@pytest.fixture
def cnn_ckpt(tmp_path):
    return _pruned(tmp_path, "mnist1d_cnn", (1, 1, 40))


def _by_format(report):
    return {(r.model, r.format): r for r in report.rows}


def test_every_format_is_planned_verified_and_timed(mlp_ckpt, cnn_ckpt):
    formats = ("dense", "csr", "channels", "semi24", "onnx")
    report = compare([mlp_ckpt, cnn_ckpt], CompareConfig(formats=formats, **FAST))
    rows = _by_format(report)
    assert set(rows) == {(m, f) for m in ("mnist1d_mlp", "mnist1d_cnn") for f in formats}
    for (model, fmt), row in rows.items():
        if fmt == "semi24" and not cuda_available():
            assert row.unavailable and "GPU" in row.unavailable and row.speedup is None
            continue
        assert row.unavailable is None, row.unavailable
        assert row.verify_err is not None and row.verify_err <= 1e-4
        assert row.latency_median_ms > 0 and row.samples >= 2 * FAST["block_iters"]
        assert row.speedup_low <= row.speedup <= row.speedup_high
        base = rows[(model, "dense")]
        assert row.theoretical_speedup == pytest.approx(base.macs_m / row.effective_macs_m)
        assert row.size_ratio == pytest.approx(base.size_mb / row.size_mb)
    assert rows[("mnist1d_mlp", "onnx")].runtime == "onnxruntime"
    assert rows[("mnist1d_mlp", "csr")].sparse_kernel_ran is True
    assert rows[("mnist1d_mlp", "csr")].size_ratio > 2  # values + indices of 10 % non-zeros
    assert rows[("mnist1d_mlp", "dense")].sparse_kernel_ran is None
    assert rows[("mnist1d_mlp", "dense")].speedup == 1.0
    assert rows[("mnist1d_mlp", "dense")].delta_top1 is None  # no --data


def test_slowed_variant_loses_and_advice_names_it(mlp_ckpt, monkeypatch):
    original = compare_plan._in_memory

    def slowed(loaded, fmt, config, base):
        variant = original(loaded, fmt, config, base)
        if fmt == "csr":
            variant.model.register_forward_pre_hook(lambda module, args: time.sleep(0.003))
        return variant

    timings = []
    real_time = compare_run.time_interleaved

    def spy(*args, **kwargs):
        timings.append(real_time(*args, **kwargs))
        return timings[-1]

    monkeypatch.setattr(compare_plan, "_in_memory", slowed)
    monkeypatch.setattr(compare_run, "time_interleaved", spy)
    report = compare([mlp_ckpt], CompareConfig(formats=("dense", "csr", "channels"), **FAST))
    assert len(timings) == 1  # every variant in one interleaved run
    (timing,) = timings
    assert len(timing.rounds) == 3
    rows = _by_format(report)
    csr = rows[("mnist1d_mlp", "csr")]
    stats = timing.speedup(f"{mlp_ckpt}|csr|torch", f"{mlp_ckpt}|dense|torch")
    dense = rows[("mnist1d_mlp", "dense")]  # the speedup is the latency columns' ratio
    assert csr.speedup == pytest.approx(dense.latency_median_ms / csr.latency_median_ms)
    assert csr.speedup_high == max(stats.high, csr.speedup)  # p90 of per-round ratios
    assert csr.speedup_low == min(stats.low, csr.speedup)
    assert csr.speedup_high < 1 and csr.latency_median_ms > 3
    slower = f"csr/torch slower than dense ({ratio_text(csr.speedup)}x) at 90% sparsity"
    assert slower in report.advice
    assert "accuracy unknown without --data" in report.advice or "keep dense" in report.advice


def test_data_gives_top1_change_against_dense(mlp_ckpt, tmp_path):
    data = tmp_path / "data.pt"
    torch.save({"x": torch.randn(64, 40), "y": torch.randint(0, 10, (64,))}, data)
    config = CompareConfig(formats=("dense", "channels"), data=str(data), ratio=0.5, **FAST)
    rows = _by_format(compare([mlp_ckpt], config))
    dense, channels = rows[("mnist1d_mlp", "dense")], rows[("mnist1d_mlp", "channels")]
    assert 0 <= dense.top1 <= 100 and dense.delta_top1 == 0
    assert channels.delta_top1 == pytest.approx(channels.top1 - dense.top1)
    assert channels.macs_m < dense.macs_m  # half the hidden channels are gone


def _row(fmt, speedup, delta=None, sparsity=80.0):
    return CompareRow("a.pt", "net", fmt, "torch", 1, sparsity_pct=sparsity, speedup=speedup,
                      speedup_low=speedup * 0.9, speedup_high=speedup * 1.1,
                      delta_top1=delta)  # fmt: skip


def test_advice_picks_the_fastest_within_the_accuracy_budget():
    rows = [_row("dense", 1.0, 0.0), _row("csr", 0.71, 0.0), _row("channels", 2.0, -3.0),
            _row("onnx", 1.4, -0.5)]  # fmt: skip
    text = advise(rows, max_acc_drop=1.0)
    assert text.startswith("net: use onnx/torch (1.40x [1.26, 1.54] over dense")
    assert "Δtop-1 -0.50 points within 1" in text
    assert "csr/torch slower than dense (0.71x) at 80% sparsity, batch 1" in text
    assert advise(rows, max_acc_drop=5.0).startswith("net: use channels/torch (2.00x")
    assert "not clearly faster" not in text
    noisy = advise([_row("dense", 1.0), _row("csr", 1.05)])
    assert noisy.startswith("net: use csr/torch") and "not clearly faster" in noisy


def test_advice_without_accuracy_or_winner():
    assert "accuracy unknown without --data" in advise([_row("dense", 1.0), _row("csr", 1.2)])
    assert advise([_row("dense", 1.0), _row("csr", 0.5)]).startswith("net: keep dense")
    unmeasured = CompareRow("a.pt", "net", "semi24", "torch", 1, unavailable="no GPU")
    assert "semi24" not in advise([_row("dense", 1.0), unmeasured])


def _report():
    rows = [_row("dense", 1.0, 0.0, 90.0), _row("csr", 0.7, -0.2, 90.0)]
    for row, ms in zip(rows, (1.0, 1.4), strict=True):
        row.latency_median_ms, row.latency_p10_ms, row.latency_p90_ms = ms, ms * 0.9, ms * 1.2
        row.theoretical_speedup, row.top1 = 10.0, 80.0 + (row.delta_top1 or 0)
    return CompareReport({"cpu": "test"}, {"device": "cpu", "rounds": 2}, rows, "net: keep dense")


def test_plots_are_png_files_linked_in_markdown(tmp_path):
    report = _report()
    report.plots = [Path(p).name for p in write_plots(report, tmp_path, "report")]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["report-accuracy.png", "report-latency.png", "report-speedup.png"]
    for path in tmp_path.iterdir():
        assert path.read_bytes()[:8] == PNG
    text = render_markdown(report)
    assert "](report-latency.png)" in text and "](report-speedup.png)" in text
    assert "**Advice:** net: keep dense" in text


def test_json_round_trip_and_schema():
    data = json.loads(json.dumps(_report().to_dict()))
    assert data["schema"] == "sparsebench.compare/v1"
    again = CompareReport.from_dict(data)
    assert again.rows[1].speedup == 0.7 and again.advice == "net: keep dense"
    with pytest.raises(ValueError):
        CompareReport.from_dict({**data, "schema": "other/v9"})


def test_bad_config_is_one_line_error():
    with pytest.raises(SparsebenchError, match="unknown format 'cssr'"):
        CompareConfig(formats=("cssr",))
    with pytest.raises(SparsebenchError, match="rounds"):
        CompareConfig(rounds=1)


def _invoke(*args):
    return runner.invoke(app, ["compare", *map(str, args)])


CLI_FAST = ["--rounds", "2", "--block-seconds", "0.005"]


def test_cli_writes_markdown_with_plots_and_json(mlp_ckpt, tmp_path):
    out = tmp_path / "report.md"
    result = _invoke(mlp_ckpt, "--formats", "dense,csr", *CLI_FAST, "--output", out)
    assert result.exit_code == 0, result.output
    assert "Speedup [p10, p90]" in result.output and "advice: mnist1d_mlp" in result.output
    assert (tmp_path / "report-latency.png").read_bytes()[:8] == PNG
    assert "](report-speedup.png)" in out.read_text()
    plots = tmp_path / "plots"
    plots.mkdir()
    out2 = tmp_path / "other.md"
    result = _invoke(mlp_ckpt, "--formats", "dense", *CLI_FAST, "--plots-dir", plots, "-o", out2)
    assert result.exit_code == 0, result.output
    assert "](plots/other-latency.png)" in out2.read_text()
    out_json = tmp_path / "report.json"
    result = _invoke(mlp_ckpt, "--formats", "dense,csr", *CLI_FAST, "--no-plots", "-o", out_json)
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert data["schema"] == "sparsebench.compare/v1" and len(data["rows"]) == 2
    assert data["rows"][1]["format"] == "csr" and data["rows"][1]["speedup"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--formats", "dense,cssr"], "unknown format 'cssr'"),
        (["--output", "r.txt"], "unknown report type"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--threads", "-2"], "--threads must be >= 1"),
        (["--block-seconds", "-1"], "--block-seconds must be >= 0"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(mlp_ckpt, args, message):
    result = _invoke(mlp_ckpt, *args)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_missing_checkpoint_exits_2(tmp_path):
    result = _invoke(tmp_path / "nope.pt")
    assert result.exit_code == 2
    assert "no such checkpoint" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_variant_that_crashes_is_reported_and_the_others_kept(mlp_ckpt, monkeypatch):
    from sparsebench.formats import get_exporter

    def crash(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(get_exporter("onnx"), "export_file", crash)
    report = compare([mlp_ckpt], CompareConfig(formats=("dense", "csr", "onnx"), **FAST))
    rows = _by_format(report)
    assert "RuntimeError: exporter exploded" in rows[("mnist1d_mlp", "onnx")].unavailable
    for fmt in ("dense", "csr"):
        assert rows[("mnist1d_mlp", fmt)].unavailable is None
        assert rows[("mnist1d_mlp", fmt)].latency_median_ms > 0
