"""The command line through typer's CliRunner: real commands, one-line errors, exit codes."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from sparsebench.cli import app

from .conftest import ARCH

runner = CliRunner()
FAST = ["--min-iters", "5", "--min-seconds", "0", "--warmup", "1", "--memory-seconds", "0.2"]
FAST += ["--energy-seconds", "0.2"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_profile_prints_the_table_and_writes_json(sb_ckpt, tmp_path):
    out = tmp_path / "report.json"
    result = invoke("profile", sb_ckpt, *FAST, "--threads", "1", "--output", out)
    assert result.exit_code == 0, result.output
    assert "Sparsity (%)" in result.output and "Latency (ms)" in result.output
    assert "Peak Memory (MB)" in result.output and "Energy (mJ)" in result.output
    row = json.loads(out.read_text())["results"][0]
    assert row["model"] == "mlp" and row["threads"] == 1
    assert row["macs_m"] == pytest.approx(0.015)  # 40*100 + 100*100 + 100*10
    assert row["peak_mem_mb"] > 0 and row["avg_mem_mb"] <= row["peak_mem_mb"]
    assert row["latency_ms"]["median"] > 0 and len(row["latency_ms"]["samples"]) >= 5


def test_profile_several_checkpoints_gives_one_row_each(sb_ckpt, state_dict_ckpt, tmp_path):
    out = tmp_path / "r.csv"
    result = invoke(
        "profile", sb_ckpt, state_dict_ckpt, "--arch", ARCH, *FAST, "--no-memory", "-o", out
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == 3  # header + two rows


def test_profile_with_data_reports_accuracy(sb_ckpt, tmp_path):
    data = tmp_path / "data.pt"
    torch.save({"x": torch.randn(50, 40), "y": torch.randint(0, 10, (50,))}, data)
    out = tmp_path / "r.json"
    result = invoke("profile", sb_ckpt, *FAST, "--no-memory", "--data", data, "-o", out)
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["results"][0]
    assert 0 <= row["top1"] <= row["top5"] <= 100


def test_per_layer_table(sb_ckpt):
    result = invoke("profile", sb_ckpt, *FAST, "--no-memory", "--no-energy", "--per-layer")
    assert result.exit_code == 0, result.output
    assert "prunable layers" in result.output and "fc2" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "missing.pt"], "no such file"),
        (["profile", "{sd}"], "plain state_dict"),
        (["profile", "{sd}", "--arch", "nope"], "unknown architecture"),
        (["profile", "{sb}", "--input-shape", "1,3,32,32"], "does not fit the model"),
        (["profile", "{sb}", "--input-shape", "a,b"], "--input-shape"),
        (["profile", "{sd}", "--arch", ARCH, "--arch-kwargs", "nope"], "not valid JSON"),
        (["profile", "{sb}", "--device", "tpu"], "unknown device"),
        (["profile", "{sb}", "-o", "{tmp}/r.xlsx"], "unknown report type"),
        (["profile", "{sb}", "--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, message, sb_ckpt, state_dict_ckpt, tmp_path):
    filled = [a.format(sd=state_dict_ckpt, sb=sb_ckpt, tmp=tmp_path) for a in args]
    result = invoke(*filled, *FAST)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.xlsx").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-iters", "0"], "--min-iters >= 1"),
        (["--memory-seconds", "0"], "--memory-seconds and --energy-seconds must be > 0"),
        (["--energy-seconds", "-1"], "--memory-seconds and --energy-seconds must be > 0"),
    ],
)
def test_bad_measurement_options_are_one_line_errors(args, message, sb_ckpt):
    result = invoke("profile", sb_ckpt, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output


def test_output_that_is_a_directory_is_refused_even_with_force(sb_ckpt, tmp_path):
    folder = tmp_path / "report.md"
    folder.mkdir()
    result = invoke("profile", sb_ckpt, *FAST, "-o", folder, "--force")
    assert result.exit_code == 2
    assert "is a directory" in result.output and "unexpected" not in result.output
    assert folder.is_dir() and not any(folder.iterdir())


def test_existing_output_is_not_overwritten(sb_ckpt, tmp_path):
    out = tmp_path / "r.md"
    out.write_text("keep")
    result = invoke("profile", sb_ckpt, *FAST, "-o", out)
    assert result.exit_code == 2 and "--force" in result.output
    assert out.read_text() == "keep"


def test_pickled_module_needs_trust_flag(mlp, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(mlp, path)
    refused = invoke("profile", path, "--input-shape", "1,40", *FAST)
    assert refused.exit_code == 2 and "--trust-checkpoint" in refused.output
    accepted = invoke(
        "profile", path, "--input-shape", "1,40", "--trust-checkpoint", *FAST, "--no-memory"
    )
    assert accepted.exit_code == 0, accepted.output


def test_models_lists_the_zoo():
    result = invoke("models", "vgg*")
    assert result.exit_code == 0
    assert "vgg16_bn" in result.output and "resnet20" not in result.output


def test_train_then_prune_then_profile(tmp_path):
    dense, pruned = tmp_path / "d.pt", tmp_path / "p.pt"
    trained = invoke("train", "--arch", "mnist1d_mlp", "--data", "mnist1d", "-o", dense,
                     "--epochs", "2")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = invoke("prune", dense, "-o", pruned, "--amount", "0.5")
    assert result.exit_code == 0, result.output
    assert "50.00% sparsity" in result.output
    out = tmp_path / "r.json"
    profiled = invoke("profile", pruned, *FAST, "--no-memory", "--data", "mnist1d", "-o", out)
    assert profiled.exit_code == 0, profiled.output
    row = json.loads(out.read_text())["results"][0]
    assert row["sparsity_pct"] == pytest.approx(50.0, abs=0.1)
    assert row["effective_macs_m"] < row["macs_m"]
    assert row["top1"] is not None
